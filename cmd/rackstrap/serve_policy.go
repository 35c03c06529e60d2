package main

import (
	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/policy"
)

// The local policy's serve flag (see docs/decisions/0014-keys-and-bundles.md).
func init() {
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		var file string
		fl.StringVar(&file, "policy", "", "local policy `FILE` (YAML; check it with 'rackstrap policy lint'): trusted signers, validation and firmware compliance before imaging and hand-off, allowed images per profile, no-power windows")
		return func() (controller.Feature, error) {
			if file == "" {
				return nil, nil
			}
			p, err := policy.Load(file)
			if err != nil {
				return nil, err
			}
			return controller.NewPolicyFeature(p), nil
		}
	}})
}
