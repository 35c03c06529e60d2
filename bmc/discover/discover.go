// Package discover finds BMCs on a network: it scans every address of a
// prefix, concurrently and with a deadline per host, for a Redfish service
// root (HTTPS, then HTTP) and an IPMI LAN channel (Get Channel
// Authentication Capabilities on UDP 623), and surveys each Redfish BMC
// found with the first credentials that work. MatchManifest compares what
// was found with a rack manifest.
package discover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
)

// Credential is one user name and password to try on the BMCs found.
type Credential struct {
	Username string
	Password string
}

// Config tunes a scan; the zero value is usable.
type Config struct {
	// Concurrency bounds the hosts probed at once (default 64).
	Concurrency int
	// HostTimeout bounds the unauthenticated probes of one host (default 3s).
	HostTimeout time.Duration
	// HTTPSPort, HTTPPort and IPMIPort are where to look (defaults 443, 80,
	// 623); tests point them at simulators on high ports.
	HTTPSPort, HTTPPort, IPMIPort uint16
	// NoIPMI and NoRedfish leave a protocol out.
	NoIPMI, NoRedfish bool
	// Credentials are tried in order on each BMC found, until one works or
	// one fails for another reason than authentication. Keep the list
	// short: BMCs lock an account after a few failed logins.
	Credentials []Credential
	// Client does the probing and surveying (default bmc.New with a
	// 10s operation timeout).
	Client *bmc.Client
	Logger *slog.Logger
	// MaxHosts refuses prefixes with more addresses (default 65536).
	MaxHosts int
}

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.HostTimeout <= 0 {
		c.HostTimeout = 3 * time.Second
	}
	if c.HTTPSPort == 0 {
		c.HTTPSPort = 443
	}
	if c.HTTPPort == 0 {
		c.HTTPPort = 80
	}
	if c.IPMIPort == 0 {
		c.IPMIPort = 623
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Client == nil {
		c.Client = bmc.New(bmc.Config{Timeout: 10 * time.Second, Logger: c.Logger})
	}
	if c.MaxHosts <= 0 {
		c.MaxHosts = 65536
	}
	return c
}

// Found is one BMC.
type Found struct {
	Address netip.Addr
	// Endpoint is how to reach it: Redfish when it speaks Redfish, IPMI
	// otherwise, with the credentials that worked (none when none did).
	Endpoint bmc.Endpoint
	Redfish  *bmc.ServiceRoot // nil: no Redfish service
	IPMI     *bmc.IPMIInfo    // nil: no IPMI answer
	// Enrolled says a credential worked; Survey then holds the machine.
	Enrolled bool
	Survey   bmc.Survey
	// AuthClass is the failure class of the last credential tried when
	// none worked ("" when none was tried).
	AuthClass string
	AuthError string
}

// Scan probes every address of prefix (network and broadcast addresses of
// IPv4 prefixes shorter than /31 excluded) and returns the BMCs found, in
// address order. Only a cancelled ctx or a bad prefix is an error; a host
// that does not answer is simply not found.
func Scan(ctx context.Context, prefix netip.Prefix, cfg Config) ([]Found, error) {
	cfg = cfg.withDefaults()
	addrs, err := hosts(prefix, cfg.MaxHosts)
	if err != nil {
		return nil, err
	}
	sem := make(chan struct{}, cfg.Concurrency)
	var mu sync.Mutex
	var found []Found
	var wg sync.WaitGroup
	for _, a := range addrs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if f, ok := probe(ctx, a, cfg); ok {
				mu.Lock()
				found = append(found, f)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(found, func(a, b Found) int { return a.Address.Compare(b.Address) })
	return found, nil
}

func hosts(p netip.Prefix, max int) ([]netip.Addr, error) {
	if !p.IsValid() {
		return nil, errors.New("discover: invalid prefix; use CIDR notation such as 10.0.0.0/24")
	}
	p = p.Masked()
	bits := p.Addr().BitLen() - p.Bits()
	if bits > 30 || 1<<bits > max {
		return nil, fmt.Errorf("discover: %s has more than %d addresses; scan a smaller prefix", p, max)
	}
	var out []netip.Addr
	for a := p.Addr(); a.IsValid() && p.Contains(a); a = a.Next() {
		out = append(out, a)
	}
	if p.Addr().Is4() && bits >= 2 {
		out = out[1 : len(out)-1]
	}
	return out, nil
}

// Probe looks at one address, as Scan does at each: it is how a BMC that
// announced itself (a DHCP lease on a BMC network) is examined. ok is false
// when nothing there answers Redfish or IPMI.
func Probe(ctx context.Context, a netip.Addr, cfg Config) (f Found, ok bool) {
	return probe(ctx, a.Unmap(), cfg.withDefaults())
}

// probe looks at one address: Redfish over HTTPS then HTTP, and IPMI, at
// once, under the host deadline; then surveys a Redfish BMC with each
// credential until one works.
func probe(ctx context.Context, a netip.Addr, cfg Config) (Found, bool) {
	hctx, cancel := context.WithTimeout(ctx, cfg.HostTimeout)
	defer cancel()
	f := Found{Address: a}
	var wg sync.WaitGroup
	if !cfg.NoIPMI {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if info, err := bmc.ProbeIPMI(hctx, netip.AddrPortFrom(a, cfg.IPMIPort)); err == nil {
				f.IPMI = &info
			}
		}()
	}
	if !cfg.NoRedfish {
		for _, u := range []string{
			"https://" + netip.AddrPortFrom(a, cfg.HTTPSPort).String(),
			"http://" + netip.AddrPortFrom(a, cfg.HTTPPort).String(),
		} {
			ep := bmc.Endpoint{Address: u}
			if root, fp, err := cfg.Client.ProbeRedfish(hctx, ep); err == nil {
				f.Redfish = &root
				ep.CertSHA256 = fp
				f.Endpoint = ep
				break
			}
		}
	}
	wg.Wait()
	switch {
	case f.Redfish != nil:
		for _, cr := range cfg.Credentials {
			ep := f.Endpoint
			ep.Username, ep.Password = cr.Username, cr.Password
			s, err := cfg.Client.Survey(ctx, ep)
			if err == nil {
				f.Endpoint, f.Enrolled, f.Survey = ep, true, s
				f.AuthClass, f.AuthError = "", ""
				break
			}
			f.AuthClass, f.AuthError = bmc.FailureClass(err), err.Error()
			if f.AuthClass != bmc.ClassAuth {
				break // the BMC failed for another reason: more passwords will not help
			}
		}
	case f.IPMI != nil:
		f.Endpoint = bmc.Endpoint{Address: netip.AddrPortFrom(a, cfg.IPMIPort).String(), Protocol: bmc.IPMI}
		for _, cr := range cfg.Credentials {
			ep := f.Endpoint
			ep.Username, ep.Password = cr.Username, cr.Password
			st, err := cfg.Client.PowerState(ctx, ep)
			if err == nil {
				f.Endpoint, f.Enrolled = ep, true
				f.Survey.PowerState = st
				f.AuthClass, f.AuthError = "", ""
				break
			}
			f.AuthClass, f.AuthError = bmc.FailureClass(err), err.Error()
			if f.AuthClass != bmc.ClassAuth {
				break
			}
		}
	default:
		return f, false
	}
	cfg.Logger.Info("bmc found", "address", a, "redfish", f.Redfish != nil, "ipmi", f.IPMI != nil, "enrolled", f.Enrolled, "serial", f.Survey.Serial)
	return f, true
}
