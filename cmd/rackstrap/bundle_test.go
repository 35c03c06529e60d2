package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	imgstore "github.com/rackstrap/rackstrap/images/store"
)

func runKeysBundleCmd(t *testing.T, c *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&bytes.Buffer{})
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

// TestKeysAndBundleCLI runs the verbs as an operator would: a factory
// keyring signs a bundle, a site trusts its public key and imports it.
func TestKeysAndBundleCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	factory, site, art := filepath.Join(dir, "factory"), filepath.Join(dir, "site"), filepath.Join(dir, "artifacts")
	g := &globals{output: "table"}
	got, err := runKeysBundleCmd(t, newKeysCmd(g), "init", "--keys-dir", factory)
	if err != nil || !strings.Contains(got, "signing key sha256:") {
		t.Fatalf("keys init = %q, %v", got, err)
	}
	pubs, _ := filepath.Glob(filepath.Join(factory, "trusted", "*.pub"))
	if len(pubs) != 1 {
		t.Fatalf("trusted keys after init: %v", pubs)
	}
	for n, body := range map[string]string{"undionly.kpxe": "ipxe", "vmlinuz": "kernel", "initrd.img": "initrd", "site.yaml": "profile"} {
		os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644)
	}
	b := filepath.Join(dir, "site.bundle")
	got, err = runKeysBundleCmd(t, newBundleCmd(g), "export", "--keys-dir", factory, "--out", b, "--zstd", "--name", "nov",
		"--ipxe", filepath.Join(dir, "undionly.kpxe"), "--kernel", filepath.Join(dir, "vmlinuz"), "--initrd", filepath.Join(dir, "initrd.img"),
		"--profile", filepath.Join(dir, "site.yaml"))
	if err != nil || !strings.Contains(got, "bundle nov: 4 files") {
		t.Fatalf("bundle export = %q, %v", got, err)
	}
	// Not trusted yet.
	if _, err := runKeysBundleCmd(t, newBundleCmd(g), "import", b, "--keys-dir", site, "--artifacts", art); err == nil || !strings.Contains(err.Error(), "rackstrap keys trust") {
		t.Fatalf("import before trust = %v, want a refusal naming 'rackstrap keys trust'", err)
	}
	if got, err := runKeysBundleCmd(t, newKeysCmd(g), "trust", "--keys-dir", site, pubs[0]); err != nil || !strings.Contains(got, "trusted sha256:") {
		t.Fatalf("keys trust = %q, %v", got, err)
	}
	got, err = runKeysBundleCmd(t, newBundleCmd(g), "verify", b, "--keys-dir", site)
	if err != nil || !strings.Contains(got, "4 files verified") {
		t.Fatalf("bundle verify = %q, %v", got, err)
	}
	got, err = runKeysBundleCmd(t, newBundleCmd(g), "import", b, "--keys-dir", site, "--artifacts", art)
	if err != nil || !strings.Contains(got, "4 files, 4 added") {
		t.Fatalf("bundle import = %q, %v", got, err)
	}
	if data, err := os.ReadFile(filepath.Join(art, "boot", "vmlinuz")); err != nil || string(data) != "kernel" {
		t.Errorf("imported kernel = %q, %v", data, err)
	}
	got, err = runKeysBundleCmd(t, newBundleCmd(g), "import", b, "--keys-dir", site, "--artifacts", art)
	if err != nil || !strings.Contains(got, "already imported") {
		t.Fatalf("second import = %q, %v", got, err)
	}
	got, err = runKeysBundleCmd(t, newBundleCmd(g), "list", "--artifacts", art)
	if err != nil || !strings.Contains(got, "nov") {
		t.Fatalf("bundle list = %q, %v", got, err)
	}
	// Rotate at the factory; the site follows the endorsement.
	if got, err := runKeysBundleCmd(t, newKeysCmd(g), "rotate", "--keys-dir", factory); err != nil || !strings.Contains(got, "endorsed by") {
		t.Fatalf("keys rotate = %q, %v", got, err)
	}
	b2 := filepath.Join(dir, "site2.bundle")
	if _, err := runKeysBundleCmd(t, newBundleCmd(g), "export", "--keys-dir", factory, "--out", b2, "--name", "dec", "--kernel", filepath.Join(dir, "vmlinuz")); err != nil {
		t.Fatal(err)
	}
	got, err = runKeysBundleCmd(t, newBundleCmd(g), "import", b2, "--keys-dir", site, "--artifacts", art)
	if err != nil || !strings.Contains(got, "now trusting") {
		t.Fatalf("import of the rotated key's bundle = %q, %v", got, err)
	}
	got, err = runKeysBundleCmd(t, newKeysCmd(&globals{output: "json"}), "list", "--keys-dir", site)
	if err != nil || strings.Count(got, `"status": "trusted"`) != 2 {
		t.Fatalf("keys list = %q, %v; want two trusted keys", got, err)
	}
	oldID := strings.TrimSuffix(filepath.Base(pubs[0]), ".pub")
	if got, err := runKeysBundleCmd(t, newKeysCmd(g), "revoke", "--keys-dir", site, oldID[:12]); err != nil || !strings.Contains(got, "revoked sha256:"+oldID) {
		t.Fatalf("keys revoke = %q, %v", got, err)
	}
	if _, err := runKeysBundleCmd(t, newBundleCmd(g), "import", b, "--keys-dir", site, "--artifacts", filepath.Join(dir, "fresh")); err == nil {
		t.Fatalf("import of a bundle signed by a revoked key succeeded")
	}
}

// TestBundleExportWholeImageStore: --image-store without --image packs
// every signed image and skips unsigned ones.
func TestBundleExportWholeImageStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := &globals{output: "table"}
	keys := filepath.Join(dir, "keys")
	if _, err := runKeysBundleCmd(t, newKeysCmd(g), "init", "--keys-dir", keys); err != nil {
		t.Fatal(err)
	}
	st, err := imgstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := imgstore.LoadPrivateKey(filepath.Join(keys, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "os.raw")
	os.WriteFile(raw, []byte("image"), 0o644)
	for _, v := range []string{"1", "2"} {
		m := &imgstore.Manifest{SchemaVersion: imgstore.ManifestVersion, Name: "gpu-node", Version: v, SpecDigest: "sha256:" + strings.Repeat("0", 64),
			BuildTime: "2026-11-24T00:00:00Z", Builder: "t", Artifacts: []imgstore.Artifact{{Name: "os.raw", Format: "raw", Size: 5,
				Digest: "sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d"}}}
		signer := priv
		if v == "2" {
			signer = nil // unsigned
		}
		if _, err := st.Import(m, map[string]string{"os.raw": raw}, signer); err != nil {
			t.Fatal(err)
		}
	}
	b := filepath.Join(dir, "b.tar")
	if _, err := runKeysBundleCmd(t, newBundleCmd(g), "export", "--keys-dir", keys, "--out", b, "--image-store", st.Dir()); err != nil {
		t.Fatal(err)
	}
	art := filepath.Join(dir, "art")
	if _, err := runKeysBundleCmd(t, newBundleCmd(g), "import", b, "--keys-dir", keys, "--artifacts", art); err != nil {
		t.Fatal(err)
	}
	got, _ := imgstore.Open(filepath.Join(art, "images"))
	refs, _ := got.List()
	if len(refs) != 1 || refs[0].String() != "gpu-node:1" || !refs[0].Signed {
		t.Errorf("imported images = %v, want only the signed gpu-node:1", refs)
	}
}
