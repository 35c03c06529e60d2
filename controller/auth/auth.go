package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/store"
)

// Config is what an Authenticator needs.
type Config struct {
	Store *store.DB
	// CA is the controller's local CA; it signs client certificates
	// (POST /api/v1/certs). Nil: certificates cannot be issued.
	CA *CA
	// ClientCAs verify client certificates (the local CA and any CA the
	// operator gave). Nil: client certificates are not accepted.
	ClientCAs *x509.CertPool
	Log       *slog.Logger
	// SummaryEvery is how often refused requests are summarised into one
	// audit entry (default one minute).
	SummaryEvery time.Duration
	// TouchEvery is how stale a token's last-used time may get before a
	// request writes it again (default one minute).
	TouchEvery time.Duration
	// Now replaces the clock (tests).
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.SummaryEvery <= 0 {
		c.SummaryEvery = time.Minute
	}
	if c.TouchEvery <= 0 {
		c.TouchEvery = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// maxRefusalKeys bounds the distinct refusals kept between summaries, so a
// flood of varied requests costs bounded memory and one audit entry.
const maxRefusalKeys = 64

// Authenticator authenticates API callers by token or client certificate
// and authorises them by role. Its Authorize is the API's authorizer.
type Authenticator struct {
	cfg Config

	mu      sync.Mutex
	refused map[refusalKey]int
	total   int
	since   time.Time
	// overflowLogged: the log said once this window that kinds overflow.
	overflowLogged bool
}

type refusalKey struct {
	Reason, Source, Route, Who string
}

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Store == nil || cfg.Log == nil {
		return nil, errors.New("auth: New needs a store and a logger")
	}
	cfg = cfg.withDefaults()
	return &Authenticator{cfg: cfg, refused: map[refusalKey]int{}, since: cfg.Now()}, nil
}

// identity is an authenticated caller.
type identity struct {
	caller string // "token:NAME" or "cert:USER", the audit actor
	role   Role
}

// Authorize decides whether r may use a route that requires perm.
func (a *Authenticator) Authorize(r *http.Request, perm api.Permission) (string, error) {
	switch perm {
	case api.PermPublic:
		return "", nil
	case api.PermAgent:
		// The agent routes' handlers check the node's own token; an API
		// token is never an agent's.
		if scheme, cred, err := ParseAuthorization(r.Header.Get("Authorization")); err == nil && scheme == "bearer" && ParseToken(cred) == nil {
			return "", a.refuse(r, "api-token-on-agent-route", "", api.Errorf(http.StatusForbidden, "forbidden",
				"agents authenticate with the enrolment token on their kernel command line; API tokens are for operators and automation",
				"API tokens do not authenticate agent routes (%s %s)", r.Method, r.URL.Path))
		}
		return "", a.checkAgentCert(r)
	}
	id, reason, err := a.identify(r)
	if err != nil {
		if reason == "" { // the store failed: not the caller's fault
			return "", err
		}
		return "", a.refuse(r, reason, id.caller, err)
	}
	if !id.role.AllowsRoute(r.Method, r.URL.Path, perm) {
		need := leastRole(perm)
		return "", a.refuse(r, "role", id.caller, api.Errorf(http.StatusForbidden, "forbidden",
			fmt.Sprintf("ask an admin for a token or certificate with role %s or one that includes it ('rackstrap token create --role %s')", need, need),
			"%s has role %s, which does not allow %s %s (it needs the %s permission)", id.caller, id.role, r.Method, r.URL.Path, perm))
	}
	return id.caller, nil
}

const (
	hintToken = "create a token with 'rackstrap token create' (the first with 'rackstrap token create --bootstrap --role admin' on the controller's host) and pass it with --token or RACKSTRAP_TOKEN"
	hintNew   = "create a new one with 'rackstrap token create' and pass it with --token or RACKSTRAP_TOKEN"
	hintCert  = "use a certificate from 'rackstrap user cert issue', or a token (--token)"
)

// identify authenticates r by its bearer token or, without one, by its
// client certificate. reason is empty when err is not the caller's fault.
func (a *Authenticator) identify(r *http.Request) (identity, string, error) {
	ctx := r.Context()
	scheme, cred, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return identity{}, "malformed-header", api.Errorf(http.StatusUnauthorized, "unauthorized", hintToken, "%v", err)
	}
	if scheme != "" {
		if scheme != "bearer" {
			return identity{}, "scheme", api.Errorf(http.StatusUnauthorized, "unauthorized", hintToken, "Authorization scheme %q is not accepted: send \"Authorization: Bearer TOKEN\"", scheme)
		}
		if ParseToken(cred) != nil {
			return identity{}, "not-a-token", api.Errorf(http.StatusUnauthorized, "unauthorized", hintToken,
				"the bearer credential is not a Rackstrap API token (those start with %q; agent enrolment tokens open only agent routes)", TokenPrefix)
		}
		t, err := a.cfg.Store.APITokenByHash(ctx, HashToken(cred))
		if errors.Is(err, store.ErrNotFound) {
			return identity{}, "unknown-token", api.Errorf(http.StatusUnauthorized, "unauthorized", hintNew, "unknown API token")
		}
		if err != nil {
			return identity{}, "", err
		}
		now := a.cfg.Now()
		if t.RevokedAt != nil {
			return identity{caller: "token:" + t.Name}, "revoked-token", api.Errorf(http.StatusUnauthorized, "unauthorized", hintNew,
				"API token %s was revoked on %s", t.Name, t.RevokedAt.UTC().Format(time.RFC3339))
		}
		if !now.Before(t.ExpiresAt) {
			return identity{caller: "token:" + t.Name}, "expired-token", api.Errorf(http.StatusUnauthorized, "unauthorized", hintNew,
				"API token %s expired on %s", t.Name, t.ExpiresAt.UTC().Format(time.RFC3339))
		}
		role, err := ParseRole(t.Role)
		if err != nil {
			return identity{}, "bad-role", api.Errorf(http.StatusUnauthorized, "unauthorized", hintNew, "API token %s: %v", t.Name, err)
		}
		if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) >= a.cfg.TouchEvery {
			if err := a.cfg.Store.TouchAPIToken(ctx, t.ID, now); err != nil {
				a.cfg.Log.Warn("auth: last use of a token not recorded", "token", t.Name, "err", err)
			}
		}
		return identity{caller: "token:" + t.Name, role: role}, "", nil
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return a.identifyCert(r)
	}
	return identity{}, "no-credentials", api.Errorf(http.StatusUnauthorized, "unauthorized", hintToken,
		"%s %s needs credentials: an API token (Authorization: Bearer) or a client certificate", r.Method, r.URL.Path)
}

func (a *Authenticator) identifyCert(r *http.Request) (identity, string, error) {
	certs := r.TLS.PeerCertificates
	leaf := certs[0]
	who := "cert:" + leaf.Subject.CommonName
	if a.cfg.ClientCAs == nil {
		return identity{}, "cert-not-accepted", api.Errorf(http.StatusUnauthorized, "unauthorized", hintToken, "this controller accepts no client certificates")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.cfg.ClientCAs, Intermediates: inter, CurrentTime: a.cfg.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return identity{caller: who}, "untrusted-cert", api.Errorf(http.StatusUnauthorized, "unauthorized", hintCert,
			"client certificate %q (serial %s) is not accepted: %v", leaf.Subject.CommonName, SerialHex(leaf.SerialNumber), err)
	}
	serial := SerialHex(leaf.SerialNumber)
	revoked, err := a.cfg.Store.ClientCertRevoked(r.Context(), serial)
	if err != nil {
		return identity{}, "", err
	}
	if revoked {
		return identity{caller: who}, "revoked-cert", api.Errorf(http.StatusUnauthorized, "unauthorized", hintCert,
			"client certificate %q (serial %s) was revoked", leaf.Subject.CommonName, serial)
	}
	user, role, err := CertIdentity(leaf)
	if err != nil {
		return identity{caller: who}, "cert-identity", api.Errorf(http.StatusUnauthorized, "unauthorized", hintCert, "%v", err)
	}
	return identity{caller: "cert:" + user, role: role}, "", nil
}

// refuse counts a refusal for the next audit summary, logs the first of
// its kind in the summary window, and returns err.
func (a *Authenticator) refuse(r *http.Request, reason, who string, err error) error {
	src := r.RemoteAddr
	if host, _, e := net.SplitHostPort(src); e == nil {
		src = host
	}
	route := r.Method + " " + r.URL.Path
	if len(route) > 120 {
		route = route[:120] + "…"
	}
	k := refusalKey{Reason: reason, Source: src, Route: route, Who: who}
	a.mu.Lock()
	a.total++
	n, seen := a.refused[k]
	full := !seen && len(a.refused) >= maxRefusalKeys
	if !full {
		a.refused[k] = n + 1
	}
	logIt := !seen && (!full || !a.overflowLogged)
	if full {
		a.overflowLogged = true
	}
	a.mu.Unlock()
	if logIt && full {
		a.cfg.Log.Warn("api: many kinds of refused requests; the rest of this summary window is counted, not logged", "kinds", maxRefusalKeys)
	} else if logIt {
		a.cfg.Log.Warn("api: request refused", "reason", reason, "source", src, "route", route, "caller", who)
	}
	return err
}

// Refusal is one kind of refused request in an audit summary.
type Refusal struct {
	Reason string `json:"reason"`
	Source string `json:"source"`
	Route  string `json:"route"`
	Who    string `json:"who,omitempty"`
	Count  int    `json:"count"`
}

// FlushRefusals writes the refusals counted since the last flush as one
// audit entry (action auth.refused), if there were any.
func (a *Authenticator) FlushRefusals(ctx context.Context) error {
	now := a.cfg.Now()
	a.mu.Lock()
	total, refused, since := a.total, a.refused, a.since
	a.total, a.refused, a.since, a.overflowLogged = 0, map[refusalKey]int{}, now, false
	a.mu.Unlock()
	if total == 0 {
		return nil
	}
	list := make([]Refusal, 0, len(refused))
	counted := 0
	for k, n := range refused {
		list = append(list, Refusal{Reason: k.Reason, Source: k.Source, Route: k.Route, Who: k.Who, Count: n})
		counted += n
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Count != list[j].Count {
			return list[i].Count > list[j].Count
		}
		return fmt.Sprint(list[i]) < fmt.Sprint(list[j])
	})
	detail := map[string]any{"since": since.UTC().Format(time.RFC3339), "until": now.UTC().Format(time.RFC3339),
		"total": total, "refusals": list}
	if other := total - counted; other > 0 {
		detail["uncategorised"] = other
	}
	if err := a.cfg.Store.Audit(ctx, store.AuditInput{Actor: "auth", Action: "auth.refused", Outcome: "refused", Detail: detail}); err != nil {
		// Put the counts back so the next flush still reports them.
		a.mu.Lock()
		a.total += total
		a.since = since
		for k, n := range refused {
			if _, ok := a.refused[k]; ok || len(a.refused) < maxRefusalKeys {
				a.refused[k] += n
			}
		}
		a.mu.Unlock()
		return fmt.Errorf("auth: audit refused requests: %w", err)
	}
	return nil
}

// Serve summarises refusals into the audit log every SummaryEvery until ctx
// ends, then once more.
func (a *Authenticator) Serve(ctx context.Context) error {
	t := time.NewTicker(a.cfg.SummaryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := a.FlushRefusals(fctx); err != nil {
				a.cfg.Log.Error("auth: refusals not audited at shutdown", "err", err)
			}
			return nil
		case <-t.C:
			if err := a.FlushRefusals(ctx); err != nil && ctx.Err() == nil {
				a.cfg.Log.Error("auth: refusals not audited", "err", err)
			}
		}
	}
}

// IsLoopback says whether an API listen address reaches only this host.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
