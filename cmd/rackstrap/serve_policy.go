package main

import (
	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/policy"
)

// The local policy's and the bundle import API's serve flags (see
// docs/decisions/0014-keys-and-bundles.md).
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
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		var bundleStore, keysDir string
		fl.StringVar(&bundleStore, "bundle-store", "", "artifact store `DIR` that bundles POSTed to /api/v1/bundles are imported into, audited (off when empty)")
		fl.StringVar(&keysDir, "keys-dir", envOr("RACKSTRAP_KEYS_DIR", "/var/lib/rackstrap/keys"), "keyring `DIR` whose trust store --bundle-store imports are checked against ('rackstrap keys')")
		return func() (controller.Feature, error) {
			if bundleStore == "" {
				return nil, nil
			}
			return controller.NewBundleFeature(bundleStore, keysDir), nil
		}
	}})
}
