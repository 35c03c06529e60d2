package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// testImage writes two artifacts (one sparse-looking disk) and a manifest.
func testImage(t *testing.T) (*Manifest, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	disk := make([]byte, 5*BlockSize+100)
	copy(disk[10:], "boot sector")
	copy(disk[3*BlockSize+7:], "root data")
	disk[len(disk)-1] = 1
	kernel := []byte("kernel bytes")
	files := map[string]string{"img.raw": filepath.Join(dir, "img.raw"), "img.vmlinuz": filepath.Join(dir, "img.vmlinuz")}
	os.WriteFile(files["img.raw"], disk, 0o644)
	os.WriteFile(files["img.vmlinuz"], kernel, 0o644)
	m := &Manifest{
		SchemaVersion: ManifestVersion, Name: "img", Version: "1.0", SpecDigest: digestOf([]byte("spec")),
		BuildTime: "2023-11-14T22:13:20Z", Builder: "rackstrap", Kernel: "6.1.0-28-amd64",
		Inputs: []Input{{Key: "base", Kind: "dir", Path: "rootfs", Digest: digestOf([]byte("in"))}},
		Artifacts: []Artifact{
			{Name: "img.raw", Format: "raw", Size: int64(len(disk)), Digest: digestOf(disk)},
			{Name: "img.vmlinuz", Format: "kernel", Size: int64(len(kernel)), Digest: digestOf(kernel)},
		},
	}
	return m, files
}

func keys(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "image.key"), filepath.Join(dir, "image.pub")
	if _, err := GenerateKey(priv, pub); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func TestImportSignVerify(t *testing.T) {
	t.Parallel()
	privPath, pubPath := keys(t)
	priv, err := LoadPrivateKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(privPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode = %v, want 0600", fi.Mode().Perm())
	}
	if _, err := GenerateKey(privPath, pubPath); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("GenerateKey over existing = %v", err)
	}
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m, files := testImage(t)
	got, err := s.Import(m, files, priv)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := got.Artifact("raw")
	wantRanges := []Range{{Offset: 0, Length: BlockSize}, {Offset: 3 * BlockSize, Length: BlockSize}, {Offset: 5 * BlockSize, Length: 100}}
	var gotRanges []Range
	for _, r := range raw.BlockMap.Ranges {
		gotRanges = append(gotRanges, Range{Offset: r.Offset, Length: r.Length})
	}
	if diff := cmp.Diff(wantRanges, gotRanges); diff != "" {
		t.Errorf("block map ranges (-want +got):\n%s", diff)
	}
	refs, err := s.List()
	if err != nil || len(refs) != 1 || refs[0].String() != "img:1.0" || !refs[0].Signed {
		t.Fatalf("List() = %v, %v", refs, err)
	}
	if _, err := s.VerifyImage("img", "1.0", pub); err != nil {
		t.Fatalf("VerifyImage() = %v", err)
	}
	r, err := s.OpenArtifact(raw)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	r.Close()
	want, _ := os.ReadFile(files["img.raw"])
	if err != nil || string(data) != string(want) {
		t.Fatalf("OpenArtifact read %d bytes, %v", len(data), err)
	}

	// another key is not trusted
	_, otherPub := keys(t)
	op, _ := LoadPublicKey(otherPub)
	if _, err := s.Manifest("img", "1.0", op); !errors.Is(err, ErrUntrustedKey) {
		t.Errorf("Manifest(other key) = %v, want ErrUntrustedKey", err)
	}
}

func TestTamperAndTruncation(t *testing.T) {
	t.Parallel()
	privPath, pubPath := keys(t)
	priv, _ := LoadPrivateKey(privPath)
	pub, _ := LoadPublicKey(pubPath)
	tests := map[string]struct {
		mutate func(t *testing.T, s *Store, m *Manifest)
		want   error
		text   string
	}{
		"flipped byte in a blob": {
			mutate: func(t *testing.T, s *Store, m *Manifest) {
				p, _ := s.BlobPath(m.Artifacts[1].Stored.Digest)
				b, _ := os.ReadFile(p)
				b[len(b)/2] ^= 0xff
				os.WriteFile(p, b, 0o644)
			},
			text: "img.vmlinuz",
		},
		"truncated blob": {
			mutate: func(t *testing.T, s *Store, m *Manifest) {
				p, _ := s.BlobPath(m.Artifacts[0].Stored.Digest)
				fi, _ := os.Stat(p)
				os.Truncate(p, fi.Size()-10)
			},
			text: "img.raw",
		},
		"missing blob": {
			mutate: func(t *testing.T, s *Store, m *Manifest) {
				p, _ := s.BlobPath(m.Artifacts[0].Stored.Digest)
				os.Remove(p)
			},
			want: ErrNotFound,
		},
		"edited manifest": {
			mutate: func(t *testing.T, s *Store, m *Manifest) {
				p := filepath.Join(s.Dir(), "images/img/1.0/manifest.json")
				b, _ := os.ReadFile(p)
				os.WriteFile(p, []byte(strings.Replace(string(b), "6.1.0-28-amd64", "6.1.0-29-amd64", 1)), 0o644)
			},
			want: ErrBadSignature,
		},
		"unsigned": {
			mutate: func(t *testing.T, s *Store, m *Manifest) {
				os.Remove(filepath.Join(s.Dir(), "images/img/1.0/manifest.json.sig"))
			},
			want: ErrUnsigned,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, _ := Open(t.TempDir())
			m, files := testImage(t)
			m, err := s.Import(m, files, priv)
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(t, s, m)
			_, err = s.VerifyImage("img", "1.0", pub)
			if err == nil {
				t.Fatal("VerifyImage() = nil after tampering")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("VerifyImage() = %v, want %v", err, tc.want)
			}
			if tc.text != "" && !strings.Contains(err.Error(), tc.text) {
				t.Errorf("VerifyImage() = %v, want it to name %s", err, tc.text)
			}
		})
	}
}

func TestImportRejectsChangedFile(t *testing.T) {
	t.Parallel()
	s, _ := Open(t.TempDir())
	m, files := testImage(t)
	os.WriteFile(files["img.vmlinuz"], []byte("other kernel"), 0o644)
	if _, err := s.Import(m, files, nil); !errors.Is(err, ErrDigest) {
		t.Fatalf("Import(changed file) = %v, want ErrDigest", err)
	}
}

func TestVerifierCatchesTruncation(t *testing.T) {
	t.Parallel()
	data := []byte("hello world")
	v := NewVerifier(strings.NewReader(string(data[:5])), digestOf(data), int64(len(data)))
	if _, err := io.ReadAll(v); !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), "truncated: 5 of 11 bytes") {
		t.Fatalf("ReadAll(truncated) = %v", err)
	}
}
