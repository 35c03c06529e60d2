package main

import (
	"sync"

	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/policy"
)

// lockedString is a string flag whose value lives in a variable shared by
// every command tree (a serve option's register and feature share it), so
// reads and writes take a lock: tests build several trees at once.
type lockedString struct {
	mu *sync.Mutex
	p  *string
}

func (s lockedString) String() string {
	if s.mu == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.p
}

func (s lockedString) Set(v string) error {
	s.mu.Lock()
	*s.p = v
	s.mu.Unlock()
	return nil
}

func (lockedString) Type() string { return "string" }

// sovereignFlags are the policy's and the bundle import API's serve flags.
type sovereignFlags struct {
	mu                           sync.Mutex
	policy, bundleStore, keysDir string
}

func (f *sovereignFlags) register(fl *pflag.FlagSet) {
	f.mu.Lock()
	f.policy, f.bundleStore, f.keysDir = "", "", envOr("RACKSTRAP_KEYS_DIR", "/var/lib/rackstrap/keys")
	f.mu.Unlock()
	fl.Var(lockedString{&f.mu, &f.policy}, "policy", "local policy `FILE` (YAML; check it with 'rackstrap policy lint'): trusted signers, validation and firmware compliance before imaging and hand-off, allowed images per profile, no-power windows")
	fl.Var(lockedString{&f.mu, &f.bundleStore}, "bundle-store", "artifact store `DIR` that bundles POSTed to /api/v1/bundles are imported into, audited (off when empty)")
	fl.Var(lockedString{&f.mu, &f.keysDir}, "keys-dir", "keyring `DIR` whose trust store --bundle-store imports are checked against ('rackstrap keys'; env RACKSTRAP_KEYS_DIR)")
}

func (f *sovereignFlags) get() (policyFile, bundleStore, keysDir string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.policy, f.bundleStore, f.keysDir
}

// See docs/decisions/0014-keys-and-bundles.md.
func init() {
	f := &sovereignFlags{}
	addServeOption(serveOption{
		register: f.register,
		feature: func() (controller.Feature, error) {
			file, _, _ := f.get()
			if file == "" {
				return nil, nil
			}
			p, err := policy.Load(file)
			if err != nil {
				return nil, err
			}
			return controller.NewPolicyFeature(p), nil
		},
	})
	addServeOption(serveOption{
		register: func(*pflag.FlagSet) {},
		feature: func() (controller.Feature, error) {
			_, store, keys := f.get()
			if store == "" {
				return nil, nil
			}
			return controller.NewBundleFeature(store, keys), nil
		},
	})
}
