package store

import (
	"testing"
)

// FuzzParseManifest: manifests arrive from bundles and disks; no input may
// panic the parser, and an accepted manifest round-trips.
func FuzzParseManifest(f *testing.F) {
	m := &Manifest{SchemaVersion: 1, Name: "a", Version: "1", SpecDigest: digestOf(nil), BuildTime: "x", Builder: "rackstrap",
		Artifacts: []Artifact{{Name: "a.raw", Format: "raw", Size: 3 << 20, Digest: digestOf(nil),
			BlockMap: &BlockMap{BlockSize: BlockSize, Ranges: []Range{{Offset: 0, Length: 10, Digest: digestOf(nil)}}}}}}
	b, _ := m.Marshal()
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"schema_version":1,"unknown":true}`))
	f.Add([]byte(`{"schema_version":1,"name":"a","version":"1","artifacts":[{"name":"../etc/passwd"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseManifest(out); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

// FuzzVerify: signature files are untrusted input.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"key_id":"sha256:00","algorithm":"ed25519","signature":"AAAA"}`), []byte("m"))
	f.Add([]byte(`not json`), []byte(""))
	f.Fuzz(func(t *testing.T, sig, manifest []byte) {
		if _, err := Verify(manifest, sig); err == nil {
			t.Fatal("Verify with no trusted keys succeeded")
		}
	})
}
