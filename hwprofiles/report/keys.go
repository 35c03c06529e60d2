package report

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ParsePrivateKey reads an ed25519 signing key: PEM "PRIVATE KEY" (PKCS #8,
// as `openssl genpkey -algorithm ed25519` writes), or a 32-byte seed or
// 64-byte key, raw or base64.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	if block, _ := pem.Decode(data); block != nil {
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse signing key: %w", err)
		}
		if ek, ok := k.(ed25519.PrivateKey); ok {
			return ek, nil
		}
		return nil, fmt.Errorf("parse signing key: a %T, not an ed25519 key", k)
	}
	b := rawOrBase64(data)
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		return ed25519.PrivateKey(b), nil
	}
	return nil, errors.New("parse signing key: not an ed25519 key; use a PKCS #8 PEM file (openssl genpkey -algorithm ed25519) or a 32-byte seed")
}

// ParsePublicKey reads an ed25519 verification key: PEM "PUBLIC KEY"
// (PKIX), or 32 bytes raw or base64.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	if block, _ := pem.Decode(data); block != nil {
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		if ek, ok := k.(ed25519.PublicKey); ok {
			return ek, nil
		}
		return nil, fmt.Errorf("parse public key: a %T, not an ed25519 key", k)
	}
	if b := rawOrBase64(data); len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	return nil, errors.New("parse public key: not an ed25519 key; use a PEM public key (openssl pkey -pubout) or 32 bytes")
}

func rawOrBase64(data []byte) []byte {
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data))); err == nil {
		return b
	}
	return data
}
