// Package auth is the controller's access control: API tokens and client
// certificates authenticate callers, roles decide what they may do, and
// every issue, revocation and refusal lands in the audit chain. It plugs
// into the API through api.Server.SetAuthorizer and serves the routes that
// manage tokens and certificates as an API extension.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/rackstrap/rackstrap/controller/api"
)

// Role is what a caller may do.
type Role string

// The roles. Admin holds every permission an operator can hold; none holds
// api.PermAgent, which only a node's own agent token grants.
const (
	Viewer   Role = "viewer"   // read nodes, racks, operations
	Operator Role = "operator" // read, and provision, power, validate
	Admin    Role = "admin"    // everything: configuration, credentials, tokens, certificates, audit
	Auditor  Role = "auditor"  // the audit log and reports only (with the AuditorReads)
)

// Roles lists the roles in order of power, for help texts and tests.
var Roles = []Role{Viewer, Operator, Auditor, Admin}

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q: use viewer, operator, auditor or admin", s)
}

// Allows says whether r holds perm.
func (r Role) Allows(perm api.Permission) bool {
	switch perm {
	case api.PermPublic:
		return true
	case api.PermAgent:
		return false
	}
	switch r {
	case Admin:
		return true
	case Operator:
		return perm == api.PermRead || perm == api.PermOperate
	case Viewer:
		return perm == api.PermRead
	case Auditor:
		return perm == api.PermAudit
	}
	return false
}

// AuditorReads are the read routes ("METHOD PATH") that reports are made
// of: an auditor, who holds the audit permission only, may use them too, so
// that 'rackstrap report' and the policy in force are theirs to read
// (issue 12: "auditor: audit log and reports only"). Nothing here changes
// anything.
var AuditorReads = []string{
	"GET /api/v1/nodes",               // rackstrap report: the rack's nodes, inventories, validation
	"GET /api/v1/policy",              // the local policy in force
	"GET /api/v1/firmware/compliance", // the firmware compliance report
}

// AllowsRoute says whether r may use the route method path that requires
// perm: what Allows says, and for auditors the AuditorReads.
func (r Role) AllowsRoute(method, path string, perm api.Permission) bool {
	if r.Allows(perm) {
		return true
	}
	if r != Auditor || perm != api.PermRead {
		return false
	}
	route := method + " " + strings.TrimSuffix(path, "/")
	for _, a := range AuditorReads {
		if a == route {
			return true
		}
	}
	return false
}

// leastRole names the weakest role that holds perm, for hints.
func leastRole(perm api.Permission) Role {
	for _, r := range []Role{Viewer, Auditor, Operator, Admin} {
		if r.Allows(perm) {
			return r
		}
	}
	return Admin
}

// TokenPrefix starts every API token, so that a token is recognisable in a
// leaked file and is never mistaken for an agent's enrolment token.
const TokenPrefix = "rst_"

// tokenLen is the prefix and 32 random bytes in unpadded base64url.
const tokenLen = len(TokenPrefix) + 43

// ErrNotAPIToken is returned by ParseToken for anything that is not
// shaped like an API token.
var ErrNotAPIToken = errors.New("not a Rackstrap API token")

// NewToken returns a fresh API token: the prefix and 256 random bits.
func NewToken() (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("new API token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// ParseToken checks that s is shaped like an API token (it says nothing of
// whether the token exists).
func ParseToken(s string) error {
	body, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok || len(s) != tokenLen {
		return ErrNotAPIToken
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) != 32 {
		return ErrNotAPIToken
	}
	return nil
}

// HashToken is what the store keeps of a token: sha256, hex. The secret
// has 256 random bits, so a plain hash cannot be searched.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// ParseAuthorization splits an Authorization header value into its scheme
// (lowercased) and credentials. An empty header is ("", "", nil).
func ParseAuthorization(h string) (scheme, cred string, err error) {
	if h == "" {
		return "", "", nil
	}
	scheme, cred, ok := strings.Cut(h, " ")
	cred = strings.TrimLeft(cred, " ")
	if !ok || scheme == "" || cred == "" || strings.ContainsAny(cred, " \t\r\n") || strings.ContainsAny(scheme, "\t\r\n") {
		return "", "", errors.New(`malformed Authorization header: send "Authorization: Bearer TOKEN"`)
	}
	return strings.ToLower(scheme), cred, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckName checks a token or user name: lowercase letters, digits, '.',
// '_' and '-', at most 63, starting with a letter or digit.
func CheckName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("invalid name %q: use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", s)
	}
	return nil
}
