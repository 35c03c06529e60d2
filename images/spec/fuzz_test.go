package spec

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, and a spec it
// accepts must survive a marshal/parse round trip with the same digest.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add(Example)
	f.Add([]byte(minimal + "frob: 1\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("base: {oci: {layout: x, platform: linux}}\n"))
	f.Add([]byte(minimal + "  disk: {size: 1.5GiB, esp_size: 40MiB}\nlayers: [{name: f, files: [{path: /x, mode: 0755, content: y}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		d := s.Digest()
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("marshal accepted spec: %v", err)
		}
		s2, err := Parse(out, "again.yaml")
		if err != nil {
			t.Fatalf("re-parse of marshalled spec failed: %v\n%s", err, out)
		}
		if d2 := s2.Digest(); d2 != d {
			t.Fatalf("digest changed over a round trip: %s vs %s\n%s", d, d2, out)
		}
	})
}
