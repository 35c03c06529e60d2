package firmware

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rackstrap/rackstrap/images/store"
)

// maxSignatureSize caps a signature file.
const maxSignatureSize = 64 << 10

// signedStatement is what a package signature covers: the package's digest
// under a domain label, so that a signature over a firmware package can
// never be taken for a signature over an image manifest (or the reverse).
// Signing the digest rather than the file keeps signing and checking
// streaming for packages of any size; the digest is checked against the
// file before the signature is trusted.
func signedStatement(sha string) []byte {
	return []byte("rackstrap-firmware-package/v1\nsha256:" + sha + "\n")
}

// SignPackage hashes a package file and returns its detached signature
// (the JSON form of images/store signatures) and its sha256, for the
// baseline. Keys come from 'rackstrap image keygen'.
func SignPackage(file string, priv ed25519.PrivateKey) (sig []byte, sha string, err error) {
	sha, err = fileSHA256(file)
	if err != nil {
		return nil, "", err
	}
	sig, err = store.Sign(signedStatement(sha), priv)
	return sig, sha, err
}

// VerifyPackage checks a package before anything is sent to a BMC: its
// file's sha256 is the baseline's, and its signature, when it has one or
// when allowUnsigned is false, verifies with one of the trusted keys.
// Errors are *Error of ClassPackageInvalid.
func VerifyPackage(p Package, trusted []ed25519.PublicKey, allowUnsigned bool) error {
	fail := func(err error) error { return fwErr("verify package "+p.File, "", ClassPackageInvalid, err) }
	if p.File == "" {
		return fail(errors.New("no package file"))
	}
	want := normalizeFingerprint(p.SHA256)
	if !validSHA256(want) {
		return fail(fmt.Errorf("the baseline's sha256 %q is not 64 hex digits", p.SHA256))
	}
	got, err := fileSHA256(p.File)
	if err != nil {
		return fail(err)
	}
	if got != want {
		return fail(fmt.Errorf("sha256 is %s, the baseline says %s: the file is not the package the baseline names", got, want))
	}
	if p.Signature == "" {
		if allowUnsigned {
			return nil
		}
		return fail(errors.New("the package has no signature and unsigned packages are not allowed; sign it with 'rackstrap firmware sign' and name the .sig file in the baseline"))
	}
	sig, err := readBounded(p.Signature, maxSignatureSize)
	if err != nil {
		return fail(fmt.Errorf("signature: %w", err))
	}
	if _, err := store.Verify(signedStatement(got), sig, trusted...); err != nil {
		return fail(fmt.Errorf("signature %s: %w", p.Signature, err))
	}
	return nil
}

func fileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func readBounded(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", file, limit)
	}
	return data, nil
}
