package bundle

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	imgstore "github.com/rackstrap/rackstrap/images/store"
)

// A Keyring is a directory holding this site's signing key and its trust
// store of signer public keys. One key signs everything Rackstrap signs:
// image manifests (images/store), firmware packages (firmware), reports
// (hwprofiles/report) and bundles; the files are the images/store format
// (PKCS #8 PEM private key, PKIX PEM public key), so 'rackstrap image
// keygen' keys and keyring keys are interchangeable.
//
//	signing.key, signing.pub   the current signing key (private key mode 0600)
//	trusted/<hex>.pub          trusted signer public keys (each usable as --trusted-key)
//	revoked/<hex>.pub          keys retired or revoked: never trusted again
//	retired/<hex>.key          earlier signing keys, kept until deleted by hand
//	rotations/<hex>.json       a new key's endorsement by the key it replaced
//
// <hex> is the key ID without its "sha256:" prefix (imgstore.KeyID).
type Keyring struct {
	dir string
}

// KeyInfo describes one key of a keyring.
type KeyInfo struct {
	ID string `json:"id"`
	// Status is signing (this site signs with it, and trusts it), trusted,
	// or revoked.
	Status string `json:"status"`
	// EndorsedBy is the key that endorsed this one in a rotation, if any.
	EndorsedBy string `json:"endorsedBy,omitempty"`
	// File is the public key file (for --trusted-key).
	File string `json:"file"`
}

// Rotation is a new signing key's endorsement by the key it replaces: the
// old key signs the new key's ID and bytes. A site that trusts the old key
// accepts the new one on the strength of it (until it revokes the old).
type Rotation struct {
	Old          string          `json:"old_key_id"`
	New          string          `json:"new_key_id"`
	NewPublicKey string          `json:"new_public_key"` // base64 of the 32 raw bytes
	Time         string          `json:"time"`
	Signature    json.RawMessage `json:"signature"` // images/store signature JSON by Old
}

// Errors a caller branches on.
var (
	ErrNoSigningKey = errors.New("no signing key")
	ErrRevoked      = errors.New("key is revoked")
)

// OpenKeyring opens (creating its directories) the keyring in dir.
func OpenKeyring(dir string) (*Keyring, error) {
	if dir == "" {
		return nil, errors.New("keys: no keyring directory given; pass --keys-dir")
	}
	for _, d := range []string{"", "trusted", "revoked", "retired", "rotations"} {
		mode := os.FileMode(0o755)
		if d == "" || d == "retired" {
			mode = 0o700
		}
		if err := os.MkdirAll(filepath.Join(dir, d), mode); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
	}
	return &Keyring{dir: dir}, nil
}

// Dir is the keyring's directory.
func (k *Keyring) Dir() string { return k.dir }

func hexID(id string) string { return strings.TrimPrefix(id, "sha256:") }

func (k *Keyring) signingPath() string { return filepath.Join(k.dir, "signing.key") }

// SigningKeyFile is the private key file the keyring signs with.
func (k *Keyring) SigningKeyFile() string { return k.signingPath() }

// TrustedFile is the public key file of a trusted key.
func (k *Keyring) TrustedFile(id string) string {
	return filepath.Join(k.dir, "trusted", hexID(id)+".pub")
}

// Init makes the keyring's signing key, or adopts an existing private key
// file when from is not empty (an 'image keygen' key), and trusts it.
// An existing signing key is never replaced: rotate it instead.
func (k *Keyring) Init(from string) (KeyInfo, error) {
	if _, err := os.Stat(k.signingPath()); err == nil {
		return KeyInfo{}, fmt.Errorf("keys: %s already has a signing key; use 'rackstrap keys rotate' to replace it", k.dir)
	}
	var pub ed25519.PublicKey
	if from != "" {
		priv, err := imgstore.LoadPrivateKey(from)
		if err != nil {
			return KeyInfo{}, fmt.Errorf("keys init --from: %w", err)
		}
		if err := writeKeyPair(k.signingPath(), filepath.Join(k.dir, "signing.pub"), priv); err != nil {
			return KeyInfo{}, err
		}
		pub = priv.Public().(ed25519.PublicKey)
	} else {
		var err error
		if pub, err = imgstore.GenerateKey(k.signingPath(), filepath.Join(k.dir, "signing.pub")); err != nil {
			return KeyInfo{}, fmt.Errorf("keys init: %w", err)
		}
	}
	return k.Trust(pub)
}

func writeKeyPair(privPath, pubPath string, priv ed25519.PrivateKey) error {
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	if err := atomicWrite(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return err
	}
	return atomicWrite(pubPath, publicPEM(priv.Public().(ed25519.PublicKey)), 0o644)
}

func publicPEM(pub ed25519.PublicKey) []byte {
	b, _ := x509.MarshalPKIXPublicKey(pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: b})
}

// atomicWrite writes data to p through a temporary file in p's directory.
func atomicWrite(p string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}

// Signer returns the signing key and the rotations that lead to it, which
// travel with everything it signs in a bundle.
func (k *Keyring) Signer() (ed25519.PrivateKey, []Rotation, error) {
	priv, err := imgstore.LoadPrivateKey(k.signingPath())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("keys: %s: %w; create one with 'rackstrap keys init'", k.dir, ErrNoSigningKey)
		}
		return nil, nil, err
	}
	rots, err := k.Rotations()
	return priv, rots, err
}

// Rotations lists the keyring's rotation records, oldest first.
func (k *Keyring) Rotations() ([]Rotation, error) {
	ents, err := os.ReadDir(filepath.Join(k.dir, "rotations"))
	if err != nil {
		return nil, err
	}
	var out []Rotation
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(k.dir, "rotations", e.Name()))
		if err != nil {
			return nil, err
		}
		var r Rotation
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("keys: rotation %s: %w", e.Name(), err)
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time < out[j].Time })
	return out, nil
}

func rotationStatement(old, new string, pub ed25519.PublicKey) []byte {
	return []byte("rackstrap-key-rotation/v1\nold:" + old + "\nnew:" + new + "\npub:" + base64.StdEncoding.EncodeToString(pub) + "\n")
}

// Rotate replaces the signing key with a new one endorsed by the old: the
// old key stays trusted (here and, through the endorsement, at every site
// that trusts it) until it is revoked; its private key moves to retired/.
func (k *Keyring) Rotate(now time.Time) (old, new KeyInfo, err error) {
	oldPriv, _, err := k.Signer()
	if err != nil {
		return old, new, err
	}
	oldPub := oldPriv.Public().(ed25519.PublicKey)
	oldID := imgstore.KeyID(oldPub)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return old, new, err
	}
	newID := imgstore.KeyID(pub)
	sig, err := imgstore.Sign(rotationStatement(oldID, newID, pub), oldPriv)
	if err != nil {
		return old, new, err
	}
	rot := Rotation{Old: oldID, New: newID, NewPublicKey: base64.StdEncoding.EncodeToString(pub), Time: now.UTC().Format(time.RFC3339Nano), Signature: json.RawMessage(sig)}
	rb, _ := json.MarshalIndent(rot, "", "  ")
	if err := atomicWrite(filepath.Join(k.dir, "rotations", hexID(newID)+".json"), append(rb, '\n'), 0o644); err != nil {
		return old, new, err
	}
	pk, _ := x509.MarshalPKCS8PrivateKey(oldPriv)
	if err := atomicWrite(filepath.Join(k.dir, "retired", hexID(oldID)+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return old, new, err
	}
	if _, err := k.Trust(pub); err != nil {
		return old, new, err
	}
	if err := writeKeyPair(k.signingPath(), filepath.Join(k.dir, "signing.pub"), priv); err != nil {
		return old, new, err
	}
	old, _ = k.info(oldID)
	new, _ = k.info(newID)
	return old, new, nil
}

// Trust adds pub to the trust store. A revoked key cannot be trusted again.
func (k *Keyring) Trust(pub ed25519.PublicKey) (KeyInfo, error) {
	id := imgstore.KeyID(pub)
	if k.IsRevoked(id) {
		return KeyInfo{}, fmt.Errorf("keys: %s: %w; a revoked key is never trusted again, have the signer rotate to a new key", id, ErrRevoked)
	}
	if err := atomicWrite(k.TrustedFile(id), publicPEM(pub), 0o644); err != nil {
		return KeyInfo{}, fmt.Errorf("keys: trust %s: %w", id, err)
	}
	return k.info(id)
}

// IsRevoked reports whether id was revoked.
func (k *Keyring) IsRevoked(id string) bool {
	_, err := os.Stat(filepath.Join(k.dir, "revoked", hexID(id)+".pub"))
	return err == nil
}

// Revoke retires a key: it is no longer trusted, and nothing it signs or
// endorses is accepted again. The current signing key cannot be revoked
// (rotate first). id may be a unique prefix of the key ID.
func (k *Keyring) Revoke(id string) (KeyInfo, error) {
	full, err := k.resolve(id)
	if err != nil {
		return KeyInfo{}, err
	}
	if priv, _, err := k.Signer(); err == nil && imgstore.KeyID(priv.Public().(ed25519.PublicKey)) == full {
		return KeyInfo{}, fmt.Errorf("keys: %s is this site's signing key; run 'rackstrap keys rotate' first, then revoke it", full)
	}
	src := k.TrustedFile(full)
	data, err := os.ReadFile(src)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("keys: revoke %s: %w", full, err)
	}
	if err := atomicWrite(filepath.Join(k.dir, "revoked", hexID(full)+".pub"), data, 0o644); err != nil {
		return KeyInfo{}, err
	}
	if err := os.Remove(src); err != nil {
		return KeyInfo{}, err
	}
	return k.info(full)
}

// resolve finds the full ID of a trusted key from an ID or unique prefix.
func (k *Keyring) resolve(id string) (string, error) {
	want := hexID(id)
	if len(want) < 8 {
		return "", fmt.Errorf("keys: %q: give at least 8 hex digits of the key ID ('rackstrap keys list' shows them)", id)
	}
	infos, err := k.List()
	if err != nil {
		return "", err
	}
	var match []string
	for _, in := range infos {
		if strings.HasPrefix(hexID(in.ID), want) && in.Status != "revoked" {
			match = append(match, in.ID)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return "", fmt.Errorf("keys: no trusted key %q in %s; 'rackstrap keys list' shows them", id, k.dir)
	}
	return "", fmt.Errorf("keys: %q matches %d keys; give more digits", id, len(match))
}

func (k *Keyring) info(id string) (KeyInfo, error) {
	infos, err := k.List()
	if err != nil {
		return KeyInfo{}, err
	}
	for _, in := range infos {
		if in.ID == id {
			return in, nil
		}
	}
	return KeyInfo{}, fmt.Errorf("keys: %s: not in %s", id, k.dir)
}

// List describes every trusted and revoked key, sorted by ID.
func (k *Keyring) List() ([]KeyInfo, error) {
	signing := ""
	if data, err := os.ReadFile(filepath.Join(k.dir, "signing.pub")); err == nil {
		if pub, err := imgstore.ParsePublicKey(data); err == nil {
			signing = imgstore.KeyID(pub)
		}
	}
	endorsed := map[string]string{}
	if rots, err := k.Rotations(); err == nil {
		for _, r := range rots {
			endorsed[r.New] = r.Old
		}
	}
	var out []KeyInfo
	for _, sub := range []string{"trusted", "revoked"} {
		ents, err := os.ReadDir(filepath.Join(k.dir, sub))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".pub") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			p := filepath.Join(k.dir, sub, e.Name())
			pub, err := imgstore.LoadPublicKey(p)
			if err != nil {
				return nil, fmt.Errorf("keys: %s: %w", p, err)
			}
			in := KeyInfo{ID: imgstore.KeyID(pub), Status: sub, File: p}
			if sub == "trusted" && in.ID == signing {
				in.Status = "signing"
			}
			in.EndorsedBy = endorsed[in.ID]
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Trusted returns the public keys of the trust store (revoked keys are not
// in it).
func (k *Keyring) Trusted() ([]ed25519.PublicKey, error) {
	ents, err := os.ReadDir(filepath.Join(k.dir, "trusted"))
	if err != nil {
		return nil, err
	}
	var out []ed25519.PublicKey
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".pub") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		pub, err := imgstore.LoadPublicKey(filepath.Join(k.dir, "trusted", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("keys: %s: %w", e.Name(), err)
		}
		if !k.IsRevoked(imgstore.KeyID(pub)) {
			out = append(out, pub)
		}
	}
	return out, nil
}

// Endorsed extends the trust store with the keys that rots endorse: a
// rotation counts when its old key is trusted (directly or through an
// earlier rotation), neither key is revoked and the old key's signature
// over the new key verifies. It returns the extended set and the keys it
// added.
func (k *Keyring) Endorsed(rots []Rotation) (all, added []ed25519.PublicKey, err error) {
	all, err = k.Trusted()
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]ed25519.PublicKey{}
	for _, p := range all {
		byID[imgstore.KeyID(p)] = p
	}
	for changed := true; changed; {
		changed = false
		for _, r := range rots {
			old, ok := byID[r.Old]
			if !ok || byID[r.New] != nil || k.IsRevoked(r.New) || k.IsRevoked(r.Old) {
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(r.NewPublicKey)
			if err != nil || len(raw) != ed25519.PublicKeySize {
				continue
			}
			pub := ed25519.PublicKey(raw)
			if imgstore.KeyID(pub) != r.New {
				continue
			}
			if _, err := imgstore.Verify(rotationStatement(r.Old, r.New, pub), r.Signature, old); err != nil {
				continue
			}
			byID[r.New] = pub
			all = append(all, pub)
			added = append(added, pub)
			changed = true
		}
	}
	return all, added, nil
}

// publicKey returns a trusted key by ID.
func (k *Keyring) publicKey(id string) (ed25519.PublicKey, error) {
	return imgstore.LoadPublicKey(k.TrustedFile(id))
}

// keepRotation stores a rotation record learned from a bundle, so that
// List shows which key endorsed a learned key.
func (k *Keyring) keepRotation(r Rotation) error {
	rb, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicWrite(filepath.Join(k.dir, "rotations", hexID(r.New)+".json"), append(rb, '\n'), 0o644)
}
