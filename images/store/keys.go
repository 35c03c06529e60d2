package store

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Errors a caller branches on.
var (
	ErrUnsigned     = errors.New("image is not signed")
	ErrBadSignature = errors.New("signature does not verify")
	ErrUntrustedKey = errors.New("signed by a key that is not trusted")
	ErrDigest       = errors.New("content does not match its digest")
	ErrNotFound     = errors.New("not found")
)

// GenerateKey writes a new ed25519 key pair: the private key as PKCS#8 PEM
// (mode 0600) and the public key as PKIX PEM. Existing files are not replaced.
func GenerateKey(privPath, pubPath string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pp, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pp}), 0o644); err != nil {
		os.Remove(privPath)
		return nil, err
	}
	return pub, nil
}

func writeNew(p string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists; remove it first if you mean to replace the key", p)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadPrivateKey reads a PKCS#8 PEM ed25519 private key.
func LoadPrivateKey(p string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PEM \"PRIVATE KEY\"; generate one with 'rackstrap image keygen'", p)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", p, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T is not an ed25519 key", p, k)
	}
	return ek, nil
}

// LoadPublicKey reads a PKIX PEM ed25519 public key.
func LoadPublicKey(p string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return ParsePublicKey(data)
}

// ParsePublicKey parses a PKIX PEM ed25519 public key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("public key: not a PEM \"PUBLIC KEY\"")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key: %T is not an ed25519 key", k)
	}
	return ek, nil
}

// KeyID names a public key: sha256 of its raw bytes.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return "sha256:" + hex.EncodeToString(s[:])
}

// Signature is the detached signature of a manifest (manifest.json.sig).
type Signature struct {
	KeyID     string `json:"key_id"`
	Algorithm string `json:"algorithm"`
	Signature string `json:"signature"` // base64
}

// Sign signs canonical manifest bytes.
func Sign(manifest []byte, priv ed25519.PrivateKey) ([]byte, error) {
	pub, ok := priv.Public().(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("sign: not an ed25519 key")
	}
	sig := Signature{KeyID: KeyID(pub), Algorithm: "ed25519", Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, manifest))}
	b, err := json.MarshalIndent(sig, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Verify checks a detached signature over manifest bytes against the
// trusted keys and returns the key that signed.
func Verify(manifest, sigData []byte, trusted ...ed25519.PublicKey) (ed25519.PublicKey, error) {
	if len(sigData) == 0 {
		return nil, ErrUnsigned
	}
	var sig Signature
	if err := json.Unmarshal(sigData, &sig); err != nil {
		return nil, fmt.Errorf("%w: signature file is not valid JSON: %v", ErrBadSignature, err)
	}
	if sig.Algorithm != "ed25519" {
		return nil, fmt.Errorf("%w: algorithm %q is not ed25519", ErrBadSignature, sig.Algorithm)
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Signature)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: malformed signature", ErrBadSignature)
	}
	if len(trusted) == 0 {
		return nil, fmt.Errorf("%w: no trusted public keys given; pass --pub", ErrUntrustedKey)
	}
	for _, k := range trusted {
		if KeyID(k) != sig.KeyID {
			continue
		}
		if !ed25519.Verify(k, manifest, raw) {
			return nil, fmt.Errorf("%w: the manifest was changed after it was signed, or the signature is forged", ErrBadSignature)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: key %s", ErrUntrustedKey, sig.KeyID)
}
