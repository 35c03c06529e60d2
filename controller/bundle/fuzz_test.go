package bundle

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	imgstore "github.com/rackstrap/rackstrap/images/store"
)

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schema_version":1,"type":"rackstrap-bundle","name":"b","created":"2026-11-24T00:00:00Z","entries":[{"path":"boot/vmlinuz","kind":"kernel","size":3,"sha256":"` + strings.Repeat("a", 64) + `"}]}`))
	f.Add([]byte(`{"schema_version":1,"type":"rackstrap-bundle","name":"b","created":"2026-11-24T00:00:00Z","entries":[{"path":"../etc/passwd","kind":"kernel","size":3,"sha256":"x"}]}`))
	f.Add([]byte(`{"schema_version":1,"type":"rackstrap-bundle","name":"b","created":"x","entries":[],"extra":1}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		for _, e := range m.Entries {
			if checkPath(e.Path) != nil || filepath.IsAbs(e.Path) || strings.Contains(e.Path, "..") {
				t.Fatalf("ParseManifest accepted unsafe path %q", e.Path)
			}
		}
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseManifest(b); err != nil {
			t.Fatalf("a marshalled manifest does not parse again: %v", err)
		}
	})
}

// FuzzImport feeds arbitrary bytes to the tar (and zstd) reader: it must
// never panic, and nothing may land outside the artifact store.
func FuzzImport(f *testing.F) {
	dir := f.TempDir()
	k, err := OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := k.Init(""); err != nil {
		f.Fatal(err)
	}
	priv, rots, _ := k.Signer()
	src := filepath.Join(dir, "vmlinuz")
	os.WriteFile(src, []byte("kernel"), 0o644)
	for _, compress := range []bool{false, true} {
		var b bytes.Buffer
		if _, err := Export(context.Background(), &b, ExportOptions{Name: "seed", Files: []Source{{Kind: KindKernel, File: src}}, Signer: priv, Rotations: rots, Compress: compress}); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
		f.Add(b.Bytes()[:b.Len()/2])
	}
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0})
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		store := filepath.Join(root, "store")
		_, _ = Import(context.Background(), bytes.NewReader(data), ImportOptions{Dir: store, Keys: k})
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.Name() != "store" {
				t.Fatalf("import wrote %s outside its store", e.Name())
			}
		}
		_ = imgstore.ErrDigest
	})
}

func FuzzParseRotations(f *testing.F) {
	f.Add([]byte(`[{"old_key_id":"sha256:aa","new_key_id":"sha256:bb","new_public_key":"AAAA","time":"2026-11-24T00:00:00Z","signature":{"key_id":"sha256:aa","algorithm":"ed25519","signature":"AAAA"}}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"x":1}]`))
	f.Add([]byte(`null`))
	dir := f.TempDir()
	k, err := OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := k.Init(""); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rots, err := ParseRotations(data)
		if err != nil {
			return
		}
		// Forged rotations never extend the trust store.
		_, added, err := k.Endorsed(rots)
		if err != nil {
			t.Fatal(err)
		}
		if len(added) != 0 {
			t.Fatalf("Endorsed accepted a key from fuzz input: %+v", rots)
		}
	})
}
