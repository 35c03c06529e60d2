package bmc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/stmcginnis/gofish/common"
)

// rfReader reads Redfish resources over the operation's transport, with
// basic auth (which the Redfish specification requires every service to
// accept) or, for a BMC that refuses it (QuirkSessionAuth), a Redfish
// session. It is the part of the Redfish client that parses replies
// itself: identity, inventory and virtual media state, where bmclib reads
// too little (see docs/decisions/0007-bmc-on-bmclib.md).
type rfReader struct {
	base     string // "https://host:port"
	hostPort string
	user     string
	pass     string
	hc       *http.Client
	book     *quirkBook

	// useSession: authenticate with a session token, logging in first.
	useSession bool
	token      string
	session    string // the session's URL path, for logout
	// key is the BMC's model once readIdentity read it; learned are the
	// quirks this operation saw, recorded against key when it ends.
	key     modelKey
	learned []Quirk
}

// get fetches path and decodes its JSON into v.
func (r *rfReader) get(ctx context.Context, path string, v any) error {
	data, err := r.raw(ctx, path, true)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		// A reply cut short by our own deadline is the deadline's doing.
		return fmt.Errorf("GET %s: %w", path, DeadlineFirst(ctx, err))
	}
	return nil
}

// raw fetches path; auth says whether to send credentials.
func (r *rfReader) raw(ctx context.Context, path string, auth bool) ([]byte, error) {
	resp, data, err := r.do(ctx, http.MethodGet, path, nil, auth)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, common.ConstructError(resp.StatusCode, data)
	}
	if err := checkJSON(resp.Header.Get("Content-Type")); err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return data, nil
}

// post sends a JSON body to path and expects a 2xx answer.
func (r *rfReader) post(ctx context.Context, path string, body any) error {
	return r.send(ctx, http.MethodPost, path, body)
}

// patch sends a JSON body to path with PATCH and expects a 2xx answer.
func (r *rfReader) patch(ctx context.Context, path string, body any) error {
	return r.send(ctx, http.MethodPatch, path, body)
}

func (r *rfReader) send(ctx context.Context, method, path string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, reply, err := r.do(ctx, method, path, data, true)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return common.ConstructError(resp.StatusCode, reply)
	}
	return nil
}

// do sends one request and reads its reply (bounded by the transport). A
// BMC that answers 401 to basic auth without offering basic auth again (no
// "Basic" challenge) is asked for a session, once: that is how a
// session-only BMC nobody listed is recognised (a wrong password, answered
// with a Basic challenge, costs no second login attempt).
func (r *rfReader) do(ctx context.Context, method, path string, body []byte, auth bool) (*http.Response, []byte, error) {
	if !strings.HasPrefix(path, "/") {
		// Member links come from the BMC: "@evil.example/x" would otherwise
		// send our credentials to another host.
		return nil, nil, fmt.Errorf("%w: link %q is not a path on the BMC", ErrProtocol, path)
	}
	for attempt := 0; ; attempt++ {
		if auth && r.useSession && r.token == "" {
			if err := r.login(ctx); err != nil {
				return nil, nil, err
			}
		}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		switch {
		case !auth:
		case r.token != "":
			req.Header.Set("X-Auth-Token", r.token)
		default:
			req.SetBasicAuth(r.user, r.pass)
		}
		resp, err := r.hc.Do(req)
		if err != nil {
			return nil, nil, DeadlineFirst(ctx, err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", method, path, DeadlineFirst(ctx, err))
		}
		if resp.StatusCode == http.StatusUnauthorized && auth && !r.useSession && attempt == 0 && !offersBasic(resp.Header) {
			r.useSession = true
			r.learned = append(r.learned, QuirkSessionAuth)
			continue
		}
		return resp, data, nil
	}
}

// offersBasic says whether a 401 answer invites basic authentication.
func offersBasic(h http.Header) bool {
	for _, v := range h.Values("Www-Authenticate") {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(v)), "basic") {
			return true
		}
	}
	return false
}

// login opens a Redfish session.
func (r *rfReader) login(ctx context.Context) error {
	const sessions = "/redfish/v1/SessionService/Sessions"
	data, _ := json.Marshal(map[string]string{"UserName": r.user, "Password": r.pass})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+sessions, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return DeadlineFirst(ctx, err)
	}
	reply, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("session login: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("session login: %w", common.ConstructError(resp.StatusCode, reply))
	}
	tok := resp.Header.Get("X-Auth-Token")
	if tok == "" {
		return fmt.Errorf("%w: session login answered no X-Auth-Token", ErrProtocol)
	}
	r.token = tok
	if loc, err := url.Parse(resp.Header.Get("Location")); err == nil && strings.HasPrefix(loc.Path, "/") {
		r.session = loc.Path
	}
	return nil
}

// logout closes the session login opened, if any: BMCs have few session
// slots.
func (r *rfReader) logout(ctx context.Context) {
	if r.token == "" || r.session == "" {
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, r.base+r.session, nil)
	if err != nil {
		return
	}
	req.Header.Set("X-Auth-Token", r.token)
	if resp, err := r.hc.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	r.token, r.session = "", ""
}

// checkJSON accepts application/json and its +json relatives (and a
// missing type, which some BMCs send).
func checkJSON(ct string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return fmt.Errorf("%w: Content-Type %q", errContentType, ct)
	}
	return nil
}

// maxMembers bounds the members of one collection: no real BMC lists more
// than a few hundred of anything, and each member is a request.
const maxMembers = 4096

// members lists a collection's member links, following nextLink pages (at
// most 50, so a hostile BMC cannot loop us, and maxMembers in all).
func (r *rfReader) members(ctx context.Context, path string) ([]string, error) {
	var out []string
	for page := 0; path != "" && page < 50; page++ {
		var c rfCollection
		if err := r.get(ctx, path, &c); err != nil {
			return out, err
		}
		for _, m := range c.Members {
			if m.ID != "" {
				out = append(out, m.ID)
			}
		}
		if len(out) > maxMembers {
			return nil, fmt.Errorf("%w: collection %s lists more than %d members", ErrProtocol, path, maxMembers)
		}
		path = c.NextLink
	}
	return out, nil
}

// Redfish documents, as far as Rackstrap reads them. Numbers use FlexNum:
// BMCs send numbers as strings or null often enough.

type odataLink struct {
	ID string `json:"@odata.id"`
}

type rfCollection struct {
	Members  []odataLink
	NextLink string `json:"Members@odata.nextLink"`
}

type rfStatus struct {
	State  string
	Health string
}

type rfLocation struct {
	PartLocation struct {
		ServiceLabel string
	}
}

type rfServiceRoot struct {
	RedfishVersion string
	UUID           string
	Vendor         string
	Product        string
	Name           string
	Systems        odataLink
	Managers       odataLink
	Chassis        odataLink
	UpdateService  odataLink
	Oem            map[string]json.RawMessage
}

type rfSystem struct {
	ODataID            string `json:"@odata.id"`
	ID                 string `json:"Id"`
	Manufacturer       string
	Model              string
	SKU                string
	SerialNumber       string
	UUID               string
	BiosVersion        string
	PowerState         string
	AssetTag           string
	MemorySummary      struct{ TotalSystemMemoryGiB FlexNum }
	Boot               rfBoot
	Processors         odataLink
	Memory             odataLink
	Storage            odataLink
	SimpleStorage      odataLink
	EthernetInterfaces odataLink
	VirtualMedia       odataLink
	Links              struct {
		Chassis   []odataLink
		ManagedBy []odataLink
	}
	Actions struct {
		Reset struct {
			Target    string   `json:"target"`
			Allowable []string `json:"ResetType@Redfish.AllowableValues"`
		} `json:"#ComputerSystem.Reset"`
	}
}

type rfBoot struct {
	BootSourceOverrideEnabled string
	BootSourceOverrideTarget  string
	BootSourceOverrideMode    string
}

type rfProcessor struct {
	ID              string `json:"Id"`
	Socket          string
	ProcessorType   string
	Manufacturer    string
	Model           string
	MaxSpeedMHz     FlexNum
	TotalCores      FlexNum
	TotalThreads    FlexNum
	SerialNumber    string
	UUID            string
	FirmwareVersion string
	ProcessorMemory []struct{ CapacityMiB FlexNum }
	Location        rfLocation
	Status          rfStatus
}

type rfMemory struct {
	ID                string `json:"Id"`
	DeviceLocator     string
	MemoryDeviceType  string
	Manufacturer      string
	PartNumber        string
	SerialNumber      string
	CapacityMiB       FlexNum
	OperatingSpeedMhz FlexNum
	Status            rfStatus
}

type rfEthernet struct {
	ID                    string `json:"Id"`
	EthernetInterfaceType string
	Links                 struct{ HostInterface odataLink }
	Description           string
	MACAddress            string
	PermanentMACAddress   string
	SpeedMbps             FlexNum
	LinkStatus            string
	Status                rfStatus
	IPv4Addresses         []struct{ Address string }
}

type rfStorage struct {
	Drives []odataLink
}

type rfSimpleStorage struct {
	Devices []struct {
		Name          string
		Manufacturer  string
		Model         string
		CapacityBytes FlexNum
		Status        rfStatus
	}
}

type rfDrive struct {
	ID               string `json:"Id"`
	Model            string
	Manufacturer     string
	SerialNumber     string
	Revision         string
	MediaType        string
	Protocol         string
	CapacityBytes    FlexNum
	PhysicalLocation rfLocation
	Status           rfStatus
}

type rfChassis struct {
	ChassisType  string
	Manufacturer string
	Model        string
	SerialNumber string
	AssetTag     string
}

type rfManager struct {
	ManagerType        string
	LogServices        odataLink
	Manufacturer       string
	Model              string
	FirmwareVersion    string
	UUID               string
	EthernetInterfaces odataLink
	VirtualMedia       odataLink
}

type rfSoftware struct {
	ID         string `json:"Id"`
	Name       string
	Version    string
	SoftwareID string `json:"SoftwareId"`
}

type rfVirtualMedia struct {
	ID         string `json:"Id"`
	MediaTypes []string
	Image      string
	Inserted   bool
	Actions    struct {
		Insert struct {
			Target string `json:"target"`
		} `json:"#VirtualMedia.InsertMedia"`
		Eject struct {
			Target string `json:"target"`
		} `json:"#VirtualMedia.EjectMedia"`
	}
}

type rfUpdateService struct {
	FirmwareInventory odataLink
}

// FlexNum is a Redfish number as BMCs really send it: a JSON number, a
// numeric string ("40") or null (zero). Other Redfish readers (firmware/)
// use it too.
type FlexNum float64

func (n *FlexNum) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if strings.TrimSpace(s) == "" {
			return nil
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("number %q: %w", s, err)
		}
		*n = FlexNum(f)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = FlexNum(f)
	return nil
}

func (n FlexNum) int() int {
	if n < 0 || n > 1<<40 {
		return 0
	}
	return int(n)
}

func (n FlexNum) u64() uint64 {
	if n < 0 || n > 1<<62 {
		return 0
	}
	return uint64(n)
}

// mac is the interface's MAC as it appears on the wire (the current one,
// which DHCP sees, before the permanent one), or "" for an interface that
// is no physical port: the Redfish host interface between host and BMC, or
// a VLAN.
func (e rfEthernet) mac() string {
	if e.Links.HostInterface.ID != "" || e.EthernetInterfaceType == "Virtual" {
		return ""
	}
	return normalizeMAC(first(e.MACAddress, e.PermanentMACAddress))
}

type rfLogService struct {
	Actions struct {
		ClearLog struct {
			Target string `json:"target"`
		} `json:"#LogService.ClearLog"`
	}
}

// DeadlineFirst names the deadline when it is what ended a request: the
// transport may report the connection it closed on cancellation (EOF, reset)
// before the context's error, and "EOF" sends an operator looking for a
// cabling fault instead of a slow BMC.
func DeadlineFirst(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%w (the connection ended with: %v)", ctxErr, err)
	}
	return err
}
