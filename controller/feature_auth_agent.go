package controller

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/rackstrap/rackstrap/controller/agenttls"
	"github.com/rackstrap/rackstrap/controller/auth"
)

// agentURL is the API's HTTPS URL as agents reach it: the real edge's
// AgentServer with its scheme made https, else the API's own URL.
func agentURL(rt *Runtime) string {
	if e := rt.Config.Edge; e != nil && e.AgentServer != "" {
		return "https://" + strings.TrimPrefix(strings.TrimPrefix(e.AgentServer, "http://"), "https://")
	}
	return "https://" + strings.TrimPrefix(strings.TrimPrefix(rt.APIURL, "http://"), "https://")
}

// agentHosts are the names agents reach the API by, for the server
// certificate.
func agentHosts(rt *Runtime) []string {
	e := rt.Config.Edge
	if e == nil || e.AgentServer == "" {
		return nil
	}
	u, err := url.Parse(e.AgentServer)
	if err != nil || u.Host == "" {
		return nil
	}
	host := u.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return []string{host}
}

// siteSetter is the network boot service (controller/netboot) as agent
// TLS needs it.
type siteSetter interface {
	SetAgentTLS(server, siteInitrd string)
}

// startAgentTLS serves agents' client certificates and, with real
// machines, writes the site initrd into the boot artifacts and has the
// boot script append it.
func startAgentTLS(rt *Runtime, ca *auth.CA) error {
	if err := rt.API.Extend((&agenttls.Issuer{CA: ca, Store: rt.Store, Log: rt.Log.With("feature", "agent-tls")}).Extension()); err != nil {
		return err
	}
	if rt.Config.Edge == nil || rt.Config.Boot == nil {
		return nil // simulated machines have no boot script
	}
	if !strings.HasPrefix(rt.Config.Edge.AgentServer, "https://") {
		return fmt.Errorf("--agent-tls with real machines needs --agent-url https://HOST:PORT, the API's HTTPS URL as agents reach it (the image task hands it to the installed OS's first boot too); got %q", rt.Config.Edge.AgentServer)
	}
	server := agentURL(rt)
	rel, err := agenttls.WriteSiteInitrd(rt.Config.Boot.ArtifactDir, ca.PEM, server)
	if err != nil {
		return fmt.Errorf("--agent-tls: %w", err)
	}
	nb := netbootOf(rt)
	if nb == nil {
		return errors.New("--agent-tls: the network boot service is not running; agents over TLS need the real edge's boot services (--artifacts, --boot-url)")
	}
	nb.SetAgentTLS(server, rel)
	rt.Log.Info("agents speak TLS", "server", server, "site initrd", rel)
	return nil
}

// netbootOf finds the network boot service among the DHCP observers the
// real edge registered (it is one), until the Runtime carries it.
func netbootOf(rt *Runtime) siteSetter {
	if rt.dhcpObs == nil {
		return nil
	}
	rt.dhcpObs.mu.RLock()
	defer rt.dhcpObs.mu.RUnlock()
	for _, o := range rt.dhcpObs.obs {
		if s, ok := o.(siteSetter); ok {
			return s
		}
	}
	return nil
}
