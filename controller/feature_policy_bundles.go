package controller

import (
	"context"

	"github.com/rackstrap/rackstrap/controller/bundle"
)

// NewBundleFeature serves bundle imports through the API (admin): a bundle
// streamed to POST /api/v1/bundles is checked against the trust store of
// the keyring in keysDir and imported into the artifact store dir, and the
// import or its refusal is audited. GET /api/v1/bundles lists imports.
func NewBundleFeature(dir, keysDir string) Feature { return &bundleFeature{dir: dir, keysDir: keysDir} }

type bundleFeature struct{ dir, keysDir string }

func (f *bundleFeature) Name() string { return "bundles" }

func (f *bundleFeature) Start(_ context.Context, rt *Runtime) error {
	k, err := bundle.OpenKeyring(f.keysDir)
	if err != nil {
		return err
	}
	svc := &bundle.Service{Dir: f.dir, Keys: k, DB: rt.Store, Log: rt.Log.With("feature", "bundles")}
	return rt.API.Extend(svc.Extension())
}
