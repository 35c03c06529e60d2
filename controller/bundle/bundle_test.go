package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	imgstore "github.com/rackstrap/rackstrap/images/store"
)

// site is an exporter's keyring and the artifacts it packs.
type site struct {
	dir     string
	keys    *Keyring
	files   []Source
	store   string
	images  []string
	payload map[string][]byte // bundle path -> bytes
}

func newSite(t *testing.T, blobSize int) *site {
	t.Helper()
	dir := t.TempDir()
	k, err := OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Init(""); err != nil {
		t.Fatal(err)
	}
	s := &site{dir: dir, keys: k, payload: map[string][]byte{}}
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	for _, f := range []struct {
		kind Kind
		name string
		size int
	}{{KindIPXE, "undionly.kpxe", 4096}, {KindKernel, "vmlinuz", blobSize}, {KindInitramfs, "initrd.img", blobSize},
		{KindFirmware, "bmc-1.2.bin", 1000}, {KindProfile, "site.yaml", 100}, {KindBaseline, "h100.yaml", 100}} {
		data := filler(f.name, f.size)
		p := filepath.Join(src, f.name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s.files = append(s.files, Source{Kind: f.kind, File: p})
		s.payload[kindDirs[f.kind]+"/"+f.name] = data
	}
	// A signed image in an images/store, signed with the keyring's key.
	s.store = filepath.Join(dir, "images")
	st, err := imgstore.Open(s.store)
	if err != nil {
		t.Fatal(err)
	}
	priv, _, err := k.Signer()
	if err != nil {
		t.Fatal(err)
	}
	raw := filler("os", 3*blobSize)
	rp := filepath.Join(src, "os.raw")
	os.WriteFile(rp, raw, 0o644)
	sum := sha256.Sum256(raw)
	m := &imgstore.Manifest{SchemaVersion: imgstore.ManifestVersion, Name: "gpu-node", Version: "1.0.0",
		SpecDigest: "sha256:" + hex.EncodeToString(sum[:]), BuildTime: "2026-11-24T00:00:00Z", Builder: "test",
		Artifacts: []imgstore.Artifact{{Name: "os.raw", Format: "raw", Size: int64(len(raw)), Digest: "sha256:" + hex.EncodeToString(sum[:])}}}
	if _, err := st.Import(m, map[string]string{"os.raw": rp}, priv); err != nil {
		t.Fatal(err)
	}
	s.images = []string{"gpu-node:1.0.0"}
	return s
}

func filler(label string, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		s := sha256.Sum256([]byte(fmt.Sprintf("%s-%d", label, i)))
		b.Write(s[:])
	}
	return b.Bytes()[:n]
}

func (s *site) export(t *testing.T, compress bool) []byte {
	t.Helper()
	priv, rots, err := s.keys.Signer()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Export(context.Background(), &buf, ExportOptions{Name: "test", Created: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC),
		Files: s.files, ImageStore: s.store, Images: s.images, Signer: priv, Rotations: rots, Compress: compress}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// trustingSite is an importer whose trust store holds the given keyring's
// trusted keys.
func trustingSite(t *testing.T, from *Keyring) (*Keyring, string) {
	t.Helper()
	dir := t.TempDir()
	k, err := OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if from != nil {
		pubs, err := from.Trusted()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pubs {
			if _, err := k.Trust(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	return k, filepath.Join(dir, "artifacts")
}

func importBytes(k *Keyring, dir string, b []byte) (*Result, error) {
	return Import(context.Background(), bytes.NewReader(b), ImportOptions{Dir: dir, Keys: k})
}

// assertNothingImported checks that a refused import left nothing in the
// store proper: no record and none of the bundle's files.
func assertNothingImported(t *testing.T, dir string) {
	t.Helper()
	recs, err := Imported(dir)
	if err != nil || len(recs) != 0 {
		t.Errorf("Imported(%s) = %v, %v; want no record", dir, recs, err)
	}
	for _, d := range []string{"boot", "images", "firmware", "profiles", "baselines"} {
		if _, err := os.Stat(filepath.Join(dir, d)); err == nil {
			t.Errorf("%s/ exists after a refused import", d)
		}
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	t.Parallel()
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("zstd=%v", compress), func(t *testing.T) {
			t.Parallel()
			s := newSite(t, 64<<10)
			b := s.export(t, compress)
			if got := bytes.HasPrefix(b, zstdMagic); got != compress {
				t.Fatalf("zstd magic = %v, want %v", got, compress)
			}
			k, dir := trustingSite(t, s.keys)
			if _, err := Import(context.Background(), bytes.NewReader(b), ImportOptions{Dir: dir, Keys: k, VerifyOnly: true}); err != nil {
				t.Fatalf("verify-only: %v", err)
			}
			assertNothingImported(t, dir)
			res, err := importBytes(k, dir, b)
			if err != nil {
				t.Fatal(err)
			}
			if res.AlreadyImported || res.Added != res.Entries || res.Entries != 9 {
				t.Errorf("first import = %+v, want 9 entries all added", res)
			}
			for p, want := range s.payload {
				got, err := os.ReadFile(filepath.Join(dir, p))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %d bytes, %v; want the exported %d bytes", p, len(got), err, len(want))
				}
			}
			lay := Layout{dir}
			st, err := imgstore.Open(lay.ImageStore())
			if err != nil {
				t.Fatal(err)
			}
			trusted, _ := k.Trusted()
			if _, err := st.VerifyImage("gpu-node", "1.0.0", trusted...); err != nil {
				t.Errorf("the imported image does not verify: %v", err)
			}
			// Idempotent: a second import adds nothing.
			res, err = importBytes(k, dir, b)
			if err != nil {
				t.Fatal(err)
			}
			if !res.AlreadyImported || res.Added != 0 {
				t.Errorf("second import = %+v, want already imported, nothing added", res)
			}
			if recs, _ := Imported(dir); len(recs) != 1 || recs[0].Name != "test" {
				t.Errorf("records = %+v, want one for bundle test", recs)
			}
			if _, err := os.Stat(filepath.Join(dir, ".staging", res.Digest[7:39])); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("staging dir left behind: %v", err)
			}
		})
	}
}

// rewrite copies a tar, letting edit change or drop entries (keep=false)
// and append more at the end.
func rewrite(t *testing.T, in []byte, edit func(h *tar.Header, data []byte) ([]byte, bool), extra ...func(tw *tar.Writer)) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(in))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		data, keep := edit(h, data)
		if !keep {
			continue
		}
		h.Size = int64(len(data))
		tw.WriteHeader(h)
		tw.Write(data)
	}
	for _, x := range extra {
		x(tw)
	}
	tw.Close()
	return out.Bytes()
}

func TestImportRefuses(t *testing.T) {
	t.Parallel()
	s := newSite(t, 16<<10)
	good := s.export(t, false)
	other, err := OpenKeyring(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Init(""); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		bundle  []byte
		trust   *Keyring
		wantErr error
		wantMsg string
	}{
		"tampered blob": {
			bundle: rewrite(t, good, func(h *tar.Header, d []byte) ([]byte, bool) {
				if h.Name == "files/boot/vmlinuz" {
					d[100] ^= 1
				}
				return d, true
			}),
			wantErr: imgstore.ErrDigest, wantMsg: "boot/vmlinuz",
		},
		"tampered blob size": {
			bundle: rewrite(t, good, func(h *tar.Header, d []byte) ([]byte, bool) {
				if h.Name == "files/firmware/bmc-1.2.bin" {
					d = append(d, 'x')
				}
				return d, true
			}),
			wantErr: imgstore.ErrDigest, wantMsg: "firmware/bmc-1.2.bin",
		},
		"tampered manifest": {
			bundle: rewrite(t, good, func(h *tar.Header, d []byte) ([]byte, bool) {
				if h.Name == tarManifest {
					d = bytes.Replace(d, []byte(`"name": "test"`), []byte(`"name": "evil"`), 1)
				}
				return d, true
			}),
			wantErr: imgstore.ErrBadSignature, wantMsg: "tampered",
		},
		"unsigned": {
			bundle:  rewrite(t, good, func(h *tar.Header, d []byte) ([]byte, bool) { return d, h.Name != tarSignature }),
			wantErr: imgstore.ErrUnsigned, wantMsg: "no manifest.json.sig",
		},
		"untrusted signer": {
			bundle: good, trust: other,
			wantErr: imgstore.ErrUntrustedKey, wantMsg: "rackstrap keys trust",
		},
		"truncated": {
			bundle:  good[:len(good)/2],
			wantErr: ErrTruncated, wantMsg: "copy the bundle again",
		},
		"truncated zstd": {
			bundle:  func() []byte { b := s.export(t, true); return b[:len(b)*2/3] }(),
			wantErr: ErrTruncated, wantMsg: "copy the bundle again",
		},
		"entry swapped": {
			bundle: rewrite(t, good, func(h *tar.Header, d []byte) ([]byte, bool) {
				if h.Name == "files/boot/vmlinuz" {
					h.Name = "files/boot/vmlinuz2"
				}
				return d, true
			}),
			wantMsg: "where the manifest lists boot/vmlinuz",
		},
		"extra entry at the end": {
			bundle: rewrite(t, good, func(h *tar.Header, d []byte) ([]byte, bool) { return d, true }, func(tw *tar.Writer) {
				tw.WriteHeader(&tar.Header{Name: "files/boot/extra", Size: 1, Mode: 0o644, Typeflag: tar.TypeReg})
				tw.Write([]byte("x"))
			}),
			wantErr: ErrHostile, wantMsg: "after the last one",
		},
		"symlink": {
			bundle: rewrite(t, good, func(h *tar.Header, d []byte) ([]byte, bool) {
				if h.Name == "files/boot/undionly.kpxe" {
					h.Typeflag, h.Linkname, d = tar.TypeSymlink, "/etc/passwd", nil
				}
				return d, true
			}),
			wantErr: ErrHostile, wantMsg: "symbolic link",
		},
		"absolute path": {
			bundle: rewrite(t, good, func(h *tar.Header, d []byte) ([]byte, bool) {
				if h.Name == "files/boot/undionly.kpxe" {
					h.Name = "/etc/cron.d/x"
				}
				return d, true
			}),
			wantErr: ErrHostile, wantMsg: "/etc/cron.d/x",
		},
		"dot-dot": {
			bundle: rewrite(t, good, func(h *tar.Header, d []byte) ([]byte, bool) {
				if h.Name == "files/boot/undionly.kpxe" {
					h.Name = "files/boot/../../x"
				}
				return d, true
			}),
			wantErr: ErrHostile, wantMsg: "not a clean relative path",
		},
		"huge manifest": {
			bundle: func() []byte {
				var b bytes.Buffer
				tw := tar.NewWriter(&b)
				tw.WriteHeader(&tar.Header{Name: tarManifest, Size: 1 << 30, Mode: 0o644, Typeflag: tar.TypeReg})
				return b.Bytes()
			}(),
			wantErr: ErrHostile, wantMsg: "more than the",
		},
		"not a bundle": {
			bundle:  []byte("hello, this is not a tar file at all, just some text long enough to be read as a header? no."),
			wantErr: ErrTruncated,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			trust := tc.trust
			if trust == nil {
				trust = s.keys
			}
			k, dir := trustingSite(t, trust)
			if _, err := Import(context.Background(), bytes.NewReader(tc.bundle), ImportOptions{Keys: k, VerifyOnly: true}); err == nil {
				t.Errorf("verify-only import of %s = nil error", name)
			}
			_, err := importBytes(k, dir, tc.bundle)
			if err == nil {
				t.Fatalf("Import(%s) = nil error, want one", name)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Import(%s) = %v, want %v", name, err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Import(%s) = %q, want it to mention %q", name, err, tc.wantMsg)
			}
			assertNothingImported(t, dir)
		})
	}
}

func TestRotatedSigner(t *testing.T) {
	t.Parallel()
	s := newSite(t, 4<<10)
	before := s.export(t, false) // signed with the first key
	// The site trusts only the first key.
	k, dir := trustingSite(t, s.keys)
	old, nw, err := s.keys.Rotate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if old.ID == nw.ID || nw.Status != "signing" || old.Status != "trusted" || nw.EndorsedBy != old.ID {
		t.Fatalf("Rotate() = %+v, %+v; want a new signing key endorsed by the old, still trusted", old, nw)
	}
	s.files = s.files[:1]
	s.images = nil
	after := s.export(t, false) // signed with the new key, rotation attached
	res, err := importBytes(k, dir, after)
	if err != nil {
		t.Fatalf("import of a bundle signed by a rotated key: %v", err)
	}
	if res.Signer != nw.ID || len(res.Learned) != 1 || res.Learned[0] != nw.ID {
		t.Errorf("import = %+v; want signed by %s and that key learned", res, nw.ID)
	}
	if list, _ := k.List(); len(list) != 2 || (list[0].ID == nw.ID && list[0].EndorsedBy != old.ID) || (list[1].ID == nw.ID && list[1].EndorsedBy != old.ID) {
		t.Errorf("site keys after learning = %+v, want the new key shown as endorsed by %s", list, old.ID)
	}
	// The old key is kept trusted until retired: its bundles still import.
	if _, err := importBytes(k, dir, before); err != nil {
		t.Errorf("import of a bundle signed by the old key before it was retired: %v", err)
	}
	// Retire the old key: what it signed is refused, the new key's is not.
	if _, err := k.Revoke(old.ID[7:19]); err != nil {
		t.Fatal(err)
	}
	k2, dir2 := trustingSite(t, nil)
	for _, in := range []*Keyring{k} {
		pubs, _ := in.Trusted()
		for _, p := range pubs {
			k2.Trust(p)
		}
	}
	if _, err := k2.Revoke(old.ID); err == nil {
		t.Errorf("k2.Revoke of a key it never trusted = nil error")
	}
	if _, err := importBytes(k, t.TempDir(), before); !errors.Is(err, imgstore.ErrUntrustedKey) {
		t.Errorf("import of an old-key bundle after revocation = %v, want ErrUntrustedKey", err)
	}
	if _, err := importBytes(k2, dir2, after); err != nil {
		t.Errorf("import of a new-key bundle after the old key was revoked: %v", err)
	}
	// A site that revoked the old key before learning the new one refuses
	// the endorsement.
	k3, dir3 := trustingSite(t, nil)
	pubOld, _ := imgstore.LoadPublicKey(old.File)
	if _, err := k3.Trust(pubOld); err != nil {
		t.Fatal(err)
	}
	if _, err := k3.Revoke(old.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := importBytes(k3, dir3, after); !errors.Is(err, imgstore.ErrUntrustedKey) {
		t.Errorf("import through a revoked key's endorsement = %v, want ErrUntrustedKey", err)
	}
	if _, err := k3.Trust(pubOld); !errors.Is(err, ErrRevoked) {
		t.Errorf("Trust(revoked key) = %v, want ErrRevoked", err)
	}
}

func TestKeyring(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// An 'image keygen' key can be adopted: one key for everything.
	if _, err := imgstore.GenerateKey(filepath.Join(dir, "img.key"), filepath.Join(dir, "img.pub")); err != nil {
		t.Fatal(err)
	}
	k, err := OpenKeyring(filepath.Join(dir, "ring"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.Signer(); !errors.Is(err, ErrNoSigningKey) {
		t.Errorf("Signer() on an empty keyring = %v, want ErrNoSigningKey", err)
	}
	info, err := k.Init(filepath.Join(dir, "img.key"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := imgstore.LoadPublicKey(filepath.Join(dir, "img.pub"))
	if info.ID != imgstore.KeyID(pub) || info.Status != "signing" {
		t.Errorf("Init(from) = %+v, want the adopted key %s as signing key", info, imgstore.KeyID(pub))
	}
	if _, err := k.Init(""); err == nil || !strings.Contains(err.Error(), "keys rotate") {
		t.Errorf("second Init = %v, want a refusal naming 'keys rotate'", err)
	}
	if _, err := k.Revoke(info.ID); err == nil || !strings.Contains(err.Error(), "keys rotate' first") {
		t.Errorf("Revoke(signing key) = %v, want a refusal", err)
	}
	// The trusted file works as --trusted-key.
	if p, err := imgstore.LoadPublicKey(info.File); err != nil || !p.Equal(pub) {
		t.Errorf("LoadPublicKey(%s) = %v, %v", info.File, p, err)
	}
	list, err := k.List()
	if err != nil || len(list) != 1 {
		t.Errorf("List() = %+v, %v; want one key", list, err)
	}
}

// TestImportKilledAndResumed kills a real import process midway (SIGKILL),
// checks that nothing is marked imported, then imports again: the entries
// the killed import had staged are reused, not read into place twice.
func TestImportKilledAndResumed(t *testing.T) {
	t.Parallel()
	s := newSite(t, 256<<10)
	k, dir := trustingSite(t, s.keys)
	file := filepath.Join(t.TempDir(), "b.tar")
	if err := os.WriteFile(file, s.export(t, false), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestImportHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "RACKSTRAP_BUNDLE_HELPER=1", "HELPER_FILE="+file, "HELPER_DIR="+dir, "HELPER_KEYS="+k.Dir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Kill it once it has staged some entries (two done, more to come).
	staging := filepath.Join(dir, ".staging")
	deadline := time.Now().Add(20 * time.Second)
	for countStaged(staging) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the import process staged nothing in 20s; its output:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if strings.Contains(out.String(), "HELPER DONE") {
		t.Fatalf("the helper finished before it was killed; output:\n%s", out.String())
	}
	if recs, _ := Imported(dir); len(recs) != 0 {
		t.Fatalf("a killed import left a record: %+v", recs)
	}
	res, err := ImportFile(context.Background(), file, ImportOptions{Dir: dir, Keys: k})
	if err != nil {
		t.Fatalf("resumed import: %v", err)
	}
	if res.Resumed < 2 || res.Added+res.Resumed+res.Present != res.Entries {
		t.Errorf("resumed import = %+v; want at least 2 entries reused from the staging dir", res)
	}
	for p, want := range s.payload {
		if got, err := os.ReadFile(filepath.Join(dir, p)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after resume: %v", p, err)
		}
	}
}

func countStaged(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasSuffix(p, ".part") {
			n++
		}
		return nil
	})
	return n
}

// slowReader trickles a file so the parent test can kill the import.
type slowReader struct {
	r io.Reader
	n int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(p) > 16<<10 {
		p = p[:16<<10]
	}
	s.n++
	if s.n > 4 {
		time.Sleep(50 * time.Millisecond)
	}
	return s.r.Read(p)
}

func TestImportHelperProcess(t *testing.T) {
	if os.Getenv("RACKSTRAP_BUNDLE_HELPER") != "1" {
		return // only as the child of TestImportKilledAndResumed
	}
	k, err := OpenKeyring(os.Getenv("HELPER_KEYS"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.Getenv("HELPER_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Import(context.Background(), &slowReader{r: f}, ImportOptions{Dir: os.Getenv("HELPER_DIR"), Keys: k}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("HELPER DONE")
}

func TestCheckPath(t *testing.T) {
	t.Parallel()
	for p, ok := range map[string]bool{
		"boot/vmlinuz": true, "images/blobs/sha256/ab": true, "firmware/x.bin.sig": true,
		"/boot/x": false, "boot/../x": false, "boot": false, "etc/passwd": false, "boot/.hidden": false,
		"boot//x": false, "boot/x/": false, `boot\x`: false, "": false, "boot/./x": false,
	} {
		if err := checkPath(p); (err == nil) != ok {
			t.Errorf("checkPath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func TestRoundTripForTheDemo(t *testing.T) {
	t.Parallel()
	s := newSite(t, 4<<10)
	boot := filepath.Join(s.dir, "bootdir")
	os.MkdirAll(boot, 0o755)
	for _, n := range []string{"undionly.kpxe", "ipxe.efi", "vmlinuz", "initrd.img", ".hidden"} {
		os.WriteFile(filepath.Join(boot, n), []byte(n), 0o644)
	}
	out, err := RoundTrip(context.Background(), RoundTripInput{BootDir: boot, ImageStore: s.store, Images: s.images,
		SigningKey: s.keys.SigningKeyFile(), WorkDir: filepath.Join(t.TempDir(), "work")})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"undionly.kpxe", "ipxe.efi", "vmlinuz", "initrd.img"} {
		if b, err := os.ReadFile(filepath.Join(out.Layout.BootDir(), n)); err != nil || string(b) != n {
			t.Errorf("%s: %q, %v", n, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out.Layout.BootDir(), ".hidden")); err == nil {
		t.Errorf("a hidden file was packed")
	}
	st, _ := imgstore.Open(out.Layout.ImageStore())
	if _, err := st.VerifyImage("gpu-node", "1.0.0", out.Trusted...); err != nil {
		t.Errorf("imported image: %v", err)
	}
}

// TestImageSignedByUntrustedKeyIsRefused: a trusted bundle cannot smuggle
// in an image signed by a key the site does not trust.
func TestImageSignedByUntrustedKeyIsRefused(t *testing.T) {
	t.Parallel()
	s := newSite(t, 4<<10)
	dir := t.TempDir()
	if _, err := imgstore.GenerateKey(filepath.Join(dir, "o.key"), filepath.Join(dir, "o.pub")); err != nil {
		t.Fatal(err)
	}
	other, _ := imgstore.LoadPrivateKey(filepath.Join(dir, "o.key"))
	st, _ := imgstore.Open(s.store)
	if err := st.Sign("gpu-node", "1.0.0", other); err != nil {
		t.Fatal(err)
	}
	b := s.export(t, false)
	k, art := trustingSite(t, s.keys)
	for _, verifyOnly := range []bool{true, false} {
		_, err := Import(context.Background(), bytes.NewReader(b), ImportOptions{Dir: art, Keys: k, VerifyOnly: verifyOnly})
		if !errors.Is(err, imgstore.ErrUntrustedKey) || !strings.Contains(err.Error(), "image gpu-node:1.0.0") {
			t.Errorf("import (verify only %v) = %v, want the image refused as untrusted", verifyOnly, err)
		}
	}
	assertNothingImported(t, art)
}
