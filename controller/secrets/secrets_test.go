package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys", "secret.key")
	b, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", st.Mode(), err)
	}
	sealed, err := b.Seal("calvin", "node-1")
	if err != nil || strings.Contains(sealed, "calvin") {
		t.Fatalf("Seal = %q, %v", sealed, err)
	}
	again, _ := LoadOrCreate(path) // a restarted controller
	if got, err := again.Open(sealed, "node-1"); err != nil || got != "calvin" {
		t.Errorf("Open = %q, %v", got, err)
	}
	if _, err := again.Open(sealed, "node-2"); !errors.Is(err, ErrOpen) {
		t.Errorf("Open under another node = %v, want ErrOpen", err)
	}
	other, _ := LoadOrCreate(filepath.Join(t.TempDir(), "other.key"))
	if _, err := other.Open(sealed, "node-1"); !errors.Is(err, ErrOpen) {
		t.Errorf("Open with another key = %v, want ErrOpen", err)
	}
	flipped := sealed[:len(sealed)-2] + "AA"
	if _, err := again.Open(flipped, "node-1"); !errors.Is(err, ErrOpen) {
		t.Errorf("Open of an altered value = %v, want ErrOpen", err)
	}
	os.WriteFile(filepath.Join(t.TempDir(), "x"), nil, 0o600)
	short := filepath.Join(t.TempDir(), "short.key")
	os.WriteFile(short, []byte("tooshort"), 0o600)
	if _, err := LoadOrCreate(short); err == nil || !strings.Contains(err.Error(), "restore it from backup") {
		t.Errorf("short key file = %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	b, _ := New(make([]byte, 32))
	s, _ := b.Seal("pw", "n")
	f.Add(s)
	f.Add("v1:")
	f.Add("v1:!!!")
	f.Add("plain")
	f.Fuzz(func(t *testing.T, sealed string) {
		if got, err := b.Open(sealed, "n"); err == nil && sealed != s && got == "pw" {
			t.Fatalf("a different sealed value %q opened to the secret", sealed)
		}
	})
}
