// Package agenttls lets a node's agent speak mutual TLS to the controller
// without any change to the netboot image. The controller serves a tiny
// per-site initrd (a newc cpio the kernel unpacks over the netboot image's
// own, because iPXE loads several initrds) holding the local CA's
// certificate and the controller's HTTPS URL; the agent, finding them,
// speaks HTTPS trusting that CA, and after its check-in asks for a client
// certificate bound to its node (a CSR the local CA signs), which it
// presents from then on.
//
// The agent's side is cmd/rackstrap-agent/internal/agenttls; the file
// names and the route are the contract between the two.
package agenttls

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/rackstrap/rackstrap/controller/auth"
)

// Paths inside the site initrd (relative to the root the kernel unpacks
// into).
const (
	// CAFile is the PEM certificate of the CA the agent trusts.
	CAFile = "etc/rackstrap/ca.crt"
	// ServerFile holds the controller's HTTPS API URL, one line.
	ServerFile = "etc/rackstrap/server"
	// CertificatePath is the route an agent gets its client certificate
	// from (POST, its session token as bearer, a PEM CSR as body).
	CertificatePath = "/api/v1/agent/certificate"
	// AgentOU marks the subject of every agent certificate: it names no
	// role, so the access control never takes it for an operator's.
	AgentOU = auth.AgentOU
)

// maxCA bounds the CA bundle put into the initrd.
const maxCA = 64 << 10

// SiteInitrd returns the site initrd: a newc cpio archive holding
// etc/rackstrap/ca.crt (caPEM) and etc/rackstrap/server (server, an
// https:// URL). It is byte-for-byte the same for the same inputs (no
// times, fixed inode numbers), so its digest names it.
func SiteInitrd(caPEM []byte, server string) ([]byte, error) {
	if err := checkServer(server); err != nil {
		return nil, err
	}
	if len(caPEM) == 0 || len(caPEM) > maxCA || !bytes.Contains(caPEM, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, errors.New("agenttls: the CA for agents is not a PEM certificate; pass the local CA's ca.crt")
	}
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	recs := []cpio.Record{
		{Info: cpio.Info{Ino: 1, Mode: cpio.S_IFDIR | 0o755, NLink: 2, Name: "etc"}},
		{Info: cpio.Info{Ino: 2, Mode: cpio.S_IFDIR | 0o755, NLink: 2, Name: "etc/rackstrap"}},
		cpio.StaticRecord(caPEM, cpio.Info{Ino: 3, Mode: cpio.S_IFREG | 0o644, NLink: 1, Name: CAFile}),
		cpio.StaticRecord([]byte(server+"\n"), cpio.Info{Ino: 4, Mode: cpio.S_IFREG | 0o644, NLink: 1, Name: ServerFile}),
	}
	for _, r := range recs {
		if err := w.WriteRecord(r); err != nil {
			return nil, fmt.Errorf("agenttls: site initrd: %w", err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("agenttls: site initrd: %w", err)
	}
	return buf.Bytes(), nil
}

func checkServer(server string) error {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || strings.ContainsAny(server, "\n\r \t") {
		return fmt.Errorf("agenttls: agent server %q is not an https://HOST[:PORT] URL; agents over TLS need the controller's HTTPS API URL", server)
	}
	return nil
}

// WriteSiteInitrd writes the site initrd under dir (the boot artifacts
// directory) as site/rackstrap-site-<sha256 prefix>.cpio, once: the same
// CA and URL give the same file, which is left as it is. It returns the
// path relative to dir, to append to the boot script's initrds.
func WriteSiteInitrd(dir string, caPEM []byte, server string) (string, error) {
	data, err := SiteInitrd(caPEM, server)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	rel := filepath.Join("site", "rackstrap-site-"+hex.EncodeToString(sum[:8])+".cpio")
	path := filepath.Join(dir, rel)
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, data) {
		return filepath.ToSlash(rel), nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("agenttls: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".site-*.cpio")
	if err != nil {
		return "", fmt.Errorf("agenttls: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", fmt.Errorf("agenttls: write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("agenttls: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("agenttls: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("agenttls: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("agenttls: %w", err)
	}
	return filepath.ToSlash(rel), nil
}
