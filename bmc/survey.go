package bmc

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// ServiceRoot is what a Redfish service says about itself without
// credentials.
type ServiceRoot struct {
	RedfishVersion string
	UUID           string
	Vendor         string
	Product        string
	Name           string
}

// ParseServiceRoot decodes a /redfish/v1/ document, refusing one that is
// not a Redfish service root.
func ParseServiceRoot(data []byte) (ServiceRoot, error) {
	var doc struct {
		rfServiceRoot
		ODataType string `json:"@odata.type"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return ServiceRoot{}, fmt.Errorf("%w: service root: %v", ErrProtocol, err)
	}
	if doc.RedfishVersion == "" && !strings.HasPrefix(doc.ODataType, "#ServiceRoot.") {
		return ServiceRoot{}, fmt.Errorf("%w: service root has neither RedfishVersion nor a ServiceRoot @odata.type", ErrProtocol)
	}
	r := doc.rfServiceRoot
	vendor := rootVendor(r)
	return ServiceRoot{RedfishVersion: r.RedfishVersion, UUID: strings.ToLower(r.UUID), Vendor: vendor, Product: r.Product, Name: r.Name}, nil
}

// ProbeRedfish reads a service root without credentials: the cheap "is
// there a Redfish BMC here" question. It returns the root and the TLS
// certificate fingerprint (over HTTPS).
func (c *Client) ProbeRedfish(ctx context.Context, ep Endpoint) (ServiceRoot, string, error) {
	var root ServiceRoot
	res, err := c.run(ctx, "probe redfish", ep, "", func(ctx context.Context, cn *conn) (Result, error) {
		if cn.rf == nil {
			return Result{}, fmt.Errorf("%w: not a Redfish endpoint", ErrUnsupported)
		}
		data, err := cn.rf.raw(ctx, "/redfish/v1/", false)
		if err != nil {
			return Result{}, err
		}
		root, err = ParseServiceRoot(data)
		return Result{}, err
	})
	return root, res.CertSHA256, err
}

// Survey is what enrolment needs to know of a machine: its identity, its
// BMC and its host MACs. It reads only those resources (about ten
// requests), where Inventory reads everything.
type Survey struct {
	Identity
	BMCFirmware string
	BMCMAC      string
	HostMACs    []string
}

// Survey reads the machine's identity, BMC firmware and MAC and host MACs
// (Redfish only).
func (c *Client) Survey(ctx context.Context, ep Endpoint) (Survey, error) {
	var out Survey
	res, err := c.run(ctx, "survey", ep, "", func(ctx context.Context, cn *conn) (Result, error) {
		if cn.rf == nil {
			return Result{}, fmt.Errorf("%w: survey needs Redfish", ErrUnsupported)
		}
		id, err := cn.rf.readIdentity(ctx)
		if err != nil {
			return Result{}, err
		}
		out.Identity = identityOf(id)
		out.Quirks = c.quirkNames(cn)
		if err := cn.rf.each(ctx, id.system.EthernetInterfaces.ID, func(p string) error {
			var e rfEthernet
			if err := cn.rf.get(ctx, p, &e); err != nil {
				return err
			}
			if mac := e.mac(); mac != "" && !slices.Contains(out.HostMACs, mac) {
				out.HostMACs = append(out.HostMACs, mac)
			}
			return nil
		}); err != nil {
			return Result{}, err
		}
		if len(id.system.Links.ManagedBy) > 0 {
			var m rfManager
			if err := optional(cn.rf.get(ctx, id.system.Links.ManagedBy[0].ID, &m)); err != nil {
				return Result{}, err
			}
			out.BMCFirmware = m.FirmwareVersion
			if err := cn.rf.each(ctx, m.EthernetInterfaces.ID, func(p string) error {
				var e rfEthernet
				if err := cn.rf.get(ctx, p, &e); err != nil {
					return err
				}
				if mac := e.mac(); mac != "" && out.BMCMAC == "" {
					out.BMCMAC = mac
				}
				return nil
			}); err != nil {
				return Result{}, err
			}
		}
		return Result{}, nil
	})
	out.CertSHA256 = res.CertSHA256
	return out, err
}
