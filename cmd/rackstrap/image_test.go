package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runImage(t *testing.T, output string, args ...string) (string, error) {
	t.Helper()
	c := newImageCmd(&globals{output: output})
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&bytes.Buffer{})
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

func TestImageCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	for p, body := range map[string]string{
		"etc/os-release":             "ID=test\n",
		"boot/vmlinuz-6.1.0-1-amd64": "fake kernel",
		"usr/bin/hello":              "#!/bin/sh\necho hi\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(body), 0o755)
	}
	specDoc := `api_version: rackstrap.io/image/v1
name: cli
version: "1"
source_date_epoch: 1700000000
base: {dir: rootfs}
kernel: {version: 6.1.0-1-amd64}
outputs:
  squashfs: {compression: gzip}
  netboot: {compression: gzip}
`
	specPath := filepath.Join(dir, "image.yaml")
	os.WriteFile(specPath, []byte(specDoc), 0o644)
	key, pub := filepath.Join(dir, "image.key"), filepath.Join(dir, "image.pub")
	st := filepath.Join(dir, "store")
	out := filepath.Join(dir, "out")

	if got, err := runImage(t, "table", "keygen", "--key", key, "--pub", pub); err != nil || !strings.Contains(got, "key sha256:") {
		t.Fatalf("keygen = %q, %v", got, err)
	}
	if got, err := runImage(t, "table", "lint", specPath); err != nil || !strings.Contains(got, "image.yaml: ok") {
		t.Fatalf("lint = %q, %v", got, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(specDoc, "base:", "bsae:", 1)), 0o644)
	got, err := runImage(t, "table", "lint", bad)
	if err == nil || !strings.Contains(got, `bad.yaml:5:1: unknown key "bsae"; did you mean "base"?`) {
		t.Fatalf("lint bad = %q, %v", got, err)
	}
	if got, err := runImage(t, "table", "lint", "--schema"); err != nil || !strings.Contains(got, `"$schema"`) {
		t.Fatalf("lint --schema = %.80q, %v", got, err)
	}
	got, err = runImage(t, "table", "build", specPath, "--out", out, "--store", st, "--key", key)
	if err != nil || !strings.Contains(got, "cli.squashfs") || !strings.Contains(got, "cli.initramfs.cpio.gz") {
		t.Fatalf("build = %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(out, "manifest.json.sig")); err != nil {
		t.Fatal(err)
	}
	if got, err := runImage(t, "table", "list", "--store", st); err != nil || !strings.Contains(got, "cli   1        true") {
		t.Fatalf("list = %q, %v", got, err)
	}
	if got, err := runImage(t, "json", "show", "cli:1", "--store", st); err != nil || !strings.Contains(got, `"format": "squashfs"`) {
		t.Fatalf("show = %q, %v", got, err)
	}
	if got, err := runImage(t, "table", "verify", "cli:1", "--store", st, "--pub", pub); err != nil || !strings.Contains(got, "verified") {
		t.Fatalf("verify = %q, %v", got, err)
	}
	target := filepath.Join(dir, "written.squashfs")
	if got, err := runImage(t, "table", "write", "cli:1", "--store", st, "--pub", pub, "--artifact", "squashfs", "--to", target); err != nil || !strings.Contains(got, "sha256 verified") {
		t.Fatalf("write = %q, %v", got, err)
	}
	a, _ := os.ReadFile(target)
	b, _ := os.ReadFile(filepath.Join(out, "cli.squashfs"))
	if !bytes.Equal(a, b) {
		t.Fatal("written squashfs differs from the build output")
	}

	// a key that did not sign is refused; a re-sign with it is accepted
	key2, pub2 := filepath.Join(dir, "other.key"), filepath.Join(dir, "other.pub")
	runImage(t, "table", "keygen", "--key", key2, "--pub", pub2)
	if _, err := runImage(t, "table", "verify", "cli:1", "--store", st, "--pub", pub2); err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("verify with another key = %v", err)
	}
	if _, err := runImage(t, "table", "sign", "cli:1", "--store", st, "--key", key2); err != nil {
		t.Fatal(err)
	}
	if _, err := runImage(t, "table", "verify", "cli:1", "--store", st, "--pub", pub2); err != nil {
		t.Fatalf("verify after re-sign = %v", err)
	}

	// a tampered manifest fails verification with a remedy
	mp := filepath.Join(st, "images/cli/1/manifest.json")
	mb, _ := os.ReadFile(mp)
	os.WriteFile(mp, bytes.Replace(mb, []byte(`"builder": "rackstrap"`), []byte(`"builder": "mallory"  `), 1), 0o644)
	if _, err := runImage(t, "table", "verify", "cli:1", "--store", st, "--pub", pub2); err == nil || !strings.Contains(err.Error(), "do not deploy this image") {
		t.Fatalf("verify tampered = %v", err)
	}
	if _, err := runImage(t, "table", "build", specPath); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Fatalf("build without --out = %v", err)
	}
}
