package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/controller/auth"
)

// AuthConfig is access control: who may call the API (tokens, client
// certificates, roles) and whether the API speaks TLS.
type AuthConfig struct {
	// Mode is "on", "off" or "auto" (on unless the API listens on
	// loopback only).
	Mode string
	// TLS is "on", "off" or "auto": on when access control is on, except
	// with real machines, whose agents still reach the API over plain HTTP.
	TLS string
	// TLSDir holds the local CA and the server certificate (default
	// DataDir/tls).
	TLSDir string
	// ServerCertFile and ServerKeyFile replace the server certificate the
	// local CA would issue.
	ServerCertFile, ServerKeyFile string
	// ClientCAFiles are CAs, besides the local one, whose client
	// certificates are accepted.
	ClientCAFiles []string
	// Hosts are extra names and addresses for the issued server
	// certificate.
	Hosts []string
	// SummaryEvery is how often refused requests are audited (summarised).
	SummaryEvery time.Duration
	// AgentTLS lets agents on real machines speak TLS to the API: the
	// boot script appends a site initrd holding the local CA and the
	// API's HTTPS URL (controller/agenttls), and agents may get a client
	// certificate bound to their node (POST /api/v1/agent/certificate)
	// for mutual TLS. With it, --api-tls auto is on with real machines too.
	AgentTLS bool
}

// NewAuthFeature returns the access-control feature.
func NewAuthFeature(c AuthConfig) (Feature, error) {
	for _, v := range [][2]string{{"--auth", c.Mode}, {"--api-tls", c.TLS}} {
		switch v[1] {
		case "on", "off", "auto":
		default:
			return nil, fmt.Errorf("%s %q: use on, off or auto", v[0], v[1])
		}
	}
	if (c.ServerCertFile == "") != (c.ServerKeyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: give both or neither")
	}
	return &authFeature{c: c}, nil
}

type authFeature struct{ c AuthConfig }

// modes decides whether access control and TLS are on for an API listening
// on listen, with real machines (whose agents speak plain HTTP) or not.
func (c AuthConfig) modes(listen string, realEdge bool) (authOn, tlsOn bool) {
	authOn = c.Mode == "on" || (c.Mode == "auto" && !auth.IsLoopback(listen))
	tlsOn = c.TLS == "on" || (c.TLS == "auto" && authOn && (!realEdge || c.AgentTLS))
	return authOn, tlsOn
}

func (f *authFeature) Name() string { return "auth" }

func (f *authFeature) Start(ctx context.Context, rt *Runtime) error {
	c := f.c
	authOn, tlsOn := c.modes(rt.Config.APIListen, rt.Config.Edge != nil)
	if c.TLS == "auto" && authOn && rt.Config.Edge != nil && !c.AgentTLS {
		rt.Log.Warn("auth: the API speaks plain HTTP because agents on real machines reach it that way; tokens cross the network in clear: keep the API on the provisioning network, or pass --agent-tls on so that agents learn the controller's CA from the boot script")
	}
	if c.AgentTLS && !tlsOn {
		return errors.New("--agent-tls on needs the API over TLS: pass --api-tls on (or leave it auto with access control on)")
	}
	rt.Log.Info("access control", "auth", authOn, "tls", tlsOn, "listen", rt.Config.APIListen)
	if !authOn && !tlsOn {
		return nil
	}
	dir := c.TLSDir
	if dir == "" {
		if rt.Config.DataDir == "" {
			return errors.New("access control keeps its CA under --data-dir: give --data-dir or --tls-dir")
		}
		dir = filepath.Join(rt.Config.DataDir, "tls")
	}
	ca, created, err := auth.LoadOrCreateCA(dir)
	if err != nil {
		return err
	}
	if created {
		rt.Log.Info("auth: made a local CA; clients trust it with --ca-cert", "ca", filepath.Join(dir, auth.CACertFile), "sha256", auth.Fingerprint(ca.Cert))
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if err := auth.LoadCAPool(pool, c.ClientCAFiles...); err != nil {
		return err
	}
	if tlsOn {
		var cert tls.Certificate
		if c.ServerCertFile != "" {
			if cert, err = tls.LoadX509KeyPair(c.ServerCertFile, c.ServerKeyFile); err != nil {
				return fmt.Errorf("--tls-cert/--tls-key: %w", err)
			}
		} else {
			var issued bool
			hosts := auth.ServerHosts(rt.Config.APIListen, append(c.Hosts, agentHosts(rt)...))
			if cert, issued, err = auth.ServerCertificate(dir, ca, hosts); err != nil {
				return err
			}
			if issued {
				rt.Log.Info("auth: issued the API's server certificate", "cert", filepath.Join(dir, auth.ServerCertFile), "names", hosts)
			}
		}
		// Client certificates are requested, and verified by the
		// authorizer, so that a wrong one is refused with a reason (and
		// audited) instead of a bare handshake failure; agents have none.
		rt.ServeAPIWithTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12})
		// Features started after this one (serve starts access control
		// first) see the API's real scheme.
		rt.APIURL = "https://" + strings.TrimPrefix(rt.APIURL, "http://")
	}
	if c.AgentTLS {
		if err := startAgentTLS(rt, ca); err != nil {
			return err
		}
	}
	if !authOn {
		return nil
	}
	a, err := auth.New(auth.Config{Store: rt.Store, CA: ca, ClientCAs: pool, Log: rt.Log, SummaryEvery: c.SummaryEvery})
	if err != nil {
		return err
	}
	if err := rt.API.Extend(a.Extension()); err != nil {
		return err
	}
	rt.API.SetAuthorizer(a.Authorize)
	rt.Go("auth audit", a.Serve)
	tokens, err := rt.Store.ListAPITokens(ctx)
	if err != nil {
		return err
	}
	if len(tokens) == 0 {
		rt.Log.Warn("auth: no API token exists yet: make the first on this host with 'rackstrap token create --bootstrap --role admin --name admin --data-dir DIR' (or --database URL)")
	}
	return nil
}
