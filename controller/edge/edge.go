// Package edge is the real hardware edge of the lifecycle: BMCs are driven
// through bmc/ (Redfish or IPMI), the in-band agent checks in and takes its
// tasks (imaging, burn-in) through the controller's API and store, and
// inventories are validated against hwprofiles/.
package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
	"github.com/rackstrap/rackstrap/hwprofiles/validate"
	"github.com/rackstrap/rackstrap/images/seed"
)

// Login is how to log in to a node's BMC, and the certificate it must show
// (empty: trust on first use, and pin what it shows).
type Login struct {
	Username, Password string
	CertSHA256         string
}

// Credentials returns the BMC login for a node.
type Credentials func(ctx context.Context, n model.Node) (Login, error)

// Cluster hands nodes to the site's scheduler and takes them back.
type Cluster interface {
	HandOff(ctx context.Context, n model.Node, inv *inventory.Inventory, key string) error
	Release(ctx context.Context, n model.Node, reason, key string) error
}

// Image is the OS image the agent writes, as served from the artifact store.
type Image struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Compression is how URL's bytes are compressed: "" (the raw image) or
	// "zstd" (the store's blob as it is: a quarter of the bytes on the
	// wire, decoded by the agent). SHA256 and Size are the raw image's.
	Compression string `json:"compression,omitempty"`
}

// Config wires the edge.
type Config struct {
	BMC         *bmc.Client
	Credentials Credentials
	Catalog     *profile.Catalog
	Image       Image
	// Server is the controller URL the agent reports to on first boot.
	Server string
	// UEFI selects UEFI boot overrides (else legacy BIOS).
	UEFI bool
	// Poll is how often the store is read for check-ins and task results
	// while waiting for them: those this process records wake the wait at
	// once; Poll finds those another controller records (default 2 s).
	Poll time.Duration
	// FirstBootTTL bounds the first-boot token written with the image.
	FirstBootTTL time.Duration
	// PinCert records the certificate a BMC presented at enrolment (trust on
	// first use); nil pins nothing.
	PinCert func(ctx context.Context, node, sha256 string) error
	// Cluster receives handed-off nodes; nil: hand-off is refused.
	Cluster Cluster
	// ImageFor, when set, gives the image a node fetches: its rack's image
	// cache while one is registered (controller.RackCacheImage). It keeps
	// the digest and size; the URL is chosen when the image task is made.
	ImageFor func(ctx context.Context, n model.Node, img Image) Image
	// Seed, when set, gives the node's cloud-init NoCloud seed (nil for a
	// node that needs none), which the agent writes into the disk's CIDATA
	// partition after the verified write (decision 0017).
	Seed func(ctx context.Context, n model.Node) (*seed.Seed, error)
}

// Edge implements lifecycle.Edge on real hardware.
type Edge struct {
	cfg Config
	db  *store.DB
	log *slog.Logger
}

var _ lifecycle.Edge = (*Edge)(nil)

// New validates the configuration.
func New(cfg Config, db *store.DB, log *slog.Logger) (*Edge, error) {
	switch {
	case cfg.BMC == nil:
		return nil, errors.New("edge: no BMC client")
	case cfg.Credentials == nil:
		return nil, errors.New("edge: no BMC credentials")
	case cfg.Catalog == nil:
		return nil, errors.New("edge: no hardware profile catalog")
	case db == nil || log == nil:
		return nil, errors.New("edge: New needs a store and a logger")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Second
	}
	if cfg.FirstBootTTL <= 0 {
		cfg.FirstBootTTL = 2 * time.Hour
	}
	return &Edge{cfg: cfg, db: db, log: log}, nil
}

// classError carries a lifecycle failure class.
type classError struct {
	class model.FailureClass
	err   error
}

func (c *classError) Error() string        { return c.err.Error() }
func (c *classError) Unwrap() error        { return c.err }
func (c *classError) FailureClass() string { return string(c.class) }

func classed(class model.FailureClass, format string, args ...any) error {
	return &classError{class, fmt.Errorf(format, args...)}
}

func (e *Edge) endpoint(ctx context.Context, n model.Node) (bmc.Endpoint, error) {
	if n.Identity.BMC == "" {
		return bmc.Endpoint{}, classed(model.ClassBMCUnreachable, "node %s has no BMC address: add it to the rack manifest or run 'rackstrap discover'", n.Name)
	}
	l, err := e.cfg.Credentials(ctx, n)
	if err != nil {
		return bmc.Endpoint{}, &classError{model.ClassBMCAuth, err}
	}
	addr, proto := BMCAddress(n.Identity.BMC)
	return bmc.Endpoint{Address: addr, Protocol: proto, Username: l.Username, Password: l.Password, CertSHA256: l.CertSHA256}, nil
}

// BMCAddress reads a node's BMC address: "ipmi://host[:port]" is an IPMI
// (RMCP+) BMC; anything else (a host, host:port, or an http(s) URL) is
// Redfish.
func BMCAddress(s string) (string, bmc.Protocol) {
	if rest, ok := strings.CutPrefix(s, "ipmi://"); ok {
		return strings.TrimSuffix(rest, "/"), bmc.IPMI
	}
	return s, bmc.Redfish
}

// Enroll reads the machine's identity and host MACs from its BMC.
func (e *Edge) Enroll(ctx context.Context, n model.Node) (model.Identity, error) {
	ep, err := e.endpoint(ctx, n)
	if err != nil {
		return model.Identity{}, err
	}
	if ep.Protocol == bmc.IPMI {
		// IPMI has no Redfish identity or inventory: a session and a
		// power-state read prove the BMC and its login; serial, UUID and
		// host MACs stay as declared (the agent's check-in reports them).
		if _, err := e.cfg.BMC.PowerState(ctx, ep); err != nil {
			return model.Identity{}, err
		}
		return n.Identity, nil
	}
	id, err := e.cfg.BMC.Identify(ctx, ep)
	if err != nil {
		return model.Identity{}, err
	}
	if ep.CertSHA256 == "" && e.cfg.PinCert != nil {
		if err := e.cfg.PinCert(ctx, n.Name, id.CertSHA256); err != nil {
			return model.Identity{}, err
		}
	}
	out := n.Identity
	out.Serial, out.UUID = id.Serial, id.UUID
	out.MACs = nil
	for _, m := range id.MACs {
		if mac, err := model.NormalizeMAC(m); err == nil {
			out.MACs = append(out.MACs, mac)
		}
	}
	return out, nil
}

// SetBoot sets the one-time boot override (query-before-act in bmc/).
func (e *Edge) SetBoot(ctx context.Context, n model.Node, dev lifecycle.BootDevice, key string) error {
	ep, err := e.endpoint(ctx, n)
	if err != nil {
		return err
	}
	target := bmc.BootPXE
	if dev == lifecycle.BootDisk {
		target = bmc.BootDisk
	}
	_, err = e.cfg.BMC.SetBootOnce(ctx, ep, target, e.cfg.UEFI, key)
	return err
}

// Boot starts the machine from its override: on when off, cycled when on.
//
// A BMC cannot say whether an earlier cycle happened, so the key is marked
// durably first. On a replay (marked before) a machine that is on is taken
// to have booted; if that guess is wrong the check-in never comes, the wait
// times out, and the retry (a new key) cycles it.
func (e *Edge) Boot(ctx context.Context, n model.Node, key string) error {
	ep, err := e.endpoint(ctx, n)
	if err != nil {
		return err
	}
	replay, err := e.db.MarkEffect(ctx, key, n.Name, "boot")
	if err != nil {
		return err
	}
	if replay {
		state, err := e.cfg.BMC.PowerState(ctx, ep)
		if err != nil {
			return err
		}
		if state == bmc.PowerOn {
			e.log.Info("boot replayed: machine is on, not cycling it again", "node", n.Name, "key", key)
			return nil
		}
	}
	_, err = e.cfg.BMC.Power(ctx, ep, bmc.ActionCycle, key)
	return err
}

// PowerOff turns the machine off.
func (e *Edge) PowerOff(ctx context.Context, n model.Node, key string) error {
	ep, err := e.endpoint(ctx, n)
	if err != nil {
		return err
	}
	_, err = e.cfg.BMC.Power(ctx, ep, bmc.ActionOff, key)
	return err
}

// bootStep is the lifecycle step whose start opens a phase's check-in window.
var bootStep = map[lifecycle.Phase]string{
	lifecycle.PhaseNetboot:   lifecycle.StepBootNetwork,
	lifecycle.PhaseFirstBoot: lifecycle.StepBootDisk,
}

// WaitCheckIn waits for the agent's check-in after the boot that started
// this phase.
func (e *Edge) WaitCheckIn(ctx context.Context, n model.Node, phase lifecycle.Phase) error {
	_, err := e.checkIn(ctx, n, phase)
	return err
}

func (e *Edge) checkIn(ctx context.Context, n model.Node, phase lifecycle.Phase) (*store.CheckIn, error) {
	since, err := e.db.LastStepStart(ctx, n.Name, bootStep[phase])
	if err != nil {
		return nil, err
	}
	for {
		woken, stop := e.db.CheckedIn(n.Name) // before the read: a check-in after it still wakes us
		c, err := e.db.LatestCheckIn(ctx, n.Name, string(phase), since)
		if err != nil || c != nil {
			stop()
			return c, err
		}
		err = e.sleep(ctx, woken)
		stop()
		if err != nil {
			return nil, classed(model.ClassCheckinTimeout, "%s: no %s check-in from the agent since %s: check the node's console (PXE, iPXE script, agent start)",
				n.Name, phase, since.Format(time.TimeOnly))
		}
	}
}

// Inspect merges the agent's in-band inventory with the BMC's.
func (e *Edge) Inspect(ctx context.Context, n model.Node) (json.RawMessage, error) {
	c, err := e.checkIn(ctx, n, lifecycle.PhaseNetboot)
	if err != nil {
		return nil, err
	}
	inband, err := inventory.Parse(c.Inventory)
	if err != nil {
		return nil, classed(model.ClassInspectFailed, "%s: the agent's inventory is not valid: %v", n.Name, err)
	}
	ep, err := e.endpoint(ctx, n)
	if err != nil {
		return nil, err
	}
	if ep.Protocol == bmc.IPMI {
		// no out-of-band inventory over IPMI: the in-band one stands alone
		return json.Marshal(inventory.Merge(inband, nil))
	}
	oob, err := e.cfg.BMC.Inventory(ctx, ep)
	if err != nil {
		return nil, err
	}
	return json.Marshal(inventory.Merge(inband, oob))
}

// Validate checks the merged inventory against the node's profile.
func (e *Edge) Validate(ctx context.Context, n model.Node, raw json.RawMessage) (lifecycle.Verdict, error) {
	inv, err := inventory.Parse(raw)
	if err != nil {
		return lifecycle.Verdict{}, fmt.Errorf("%s: stored inventory is not valid: %w", n.Name, err)
	}
	p, err := validate.Pick(e.cfg.Catalog, n.Profile, inv.System)
	if err != nil {
		return lifecycle.Verdict{}, classed(model.ClassValidationFailed, "%s: %v: set the node's profile in the rack manifest ('rackstrap profile list' shows them)", n.Name, err)
	}
	res := validate.Validate(inv, p)
	findings, err := json.Marshal(res.Findings)
	if err != nil {
		return lifecycle.Verdict{}, err
	}
	return lifecycle.Verdict{
		Pass:     res.Verdict == validate.Pass,
		Summary:  fmt.Sprintf("profile %s: %d errors, %d warnings", res.Profile, res.Errors, res.Warnings),
		Findings: findings,
	}, nil
}

// ImageTask is the payload of an "image" task.
type ImageTask struct {
	Image
	// Server and FirstBootToken go onto the disk with the image so the
	// installed OS's agent can check in once.
	Server         string `json:"server"`
	FirstBootToken string `json:"firstBootToken"`
	// Seed is the node's NoCloud seed (its key is seed.TaskField).
	Seed *seed.Seed `json:"seed,omitempty"`
}

// ImageResult is what the agent reports after writing the image.
type ImageResult struct {
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
}

// Image asks the agent to stream the image to disk and checks its report.
func (e *Edge) Image(ctx context.Context, n model.Node, key string) error {
	if e.cfg.Image.URL == "" {
		return classed(model.ClassImageFailed, "no OS image configured: pass --image (a file from the artifact store)")
	}
	if _, err := e.db.GetTask(ctx, key); errors.Is(err, store.ErrNotFound) {
		var sd *seed.Seed
		if e.cfg.Seed != nil {
			if sd, err = e.cfg.Seed(ctx, n); err != nil {
				return err
			}
		}
		img := e.cfg.Image
		if e.cfg.ImageFor != nil {
			img = e.cfg.ImageFor(ctx, n, img)
		}
		token, err := e.db.IssueToken(ctx, n.Name, string(lifecycle.PhaseFirstBoot), e.cfg.FirstBootTTL, "controller")
		if err != nil {
			return err
		}
		payload, err := json.Marshal(ImageTask{Image: img, Server: e.cfg.Server, FirstBootToken: token, Seed: sd})
		if err != nil {
			return err
		}
		if _, err := e.db.PutTask(ctx, store.Task{Key: key, Node: n.Name, Kind: "image", Payload: payload}, "controller"); err != nil {
			return err
		}
	}
	t, err := e.waitTask(ctx, key)
	if err != nil {
		return err
	}
	if t.Status == store.TaskFailed {
		return classed(model.ClassImageFailed, "%s: the agent could not write the image: %s", n.Name, t.Message)
	}
	var r ImageResult
	if err := json.Unmarshal(t.Result, &r); err != nil || r.SHA256 != e.cfg.Image.SHA256 || r.Bytes != e.cfg.Image.Size {
		return classed(model.ClassImageVerifyFailed, "%s: written image reads back as sha256 %s (%d bytes), want %s (%d bytes): check the disk and retry",
			n.Name, r.SHA256, r.Bytes, e.cfg.Image.SHA256, e.cfg.Image.Size)
	}
	return nil
}

// BurnIn asks the first-boot agent to run the profile's burn-in checks.
func (e *Edge) BurnIn(ctx context.Context, n model.Node, key string) (json.RawMessage, error) {
	checks := []string{"gpu-burn"}
	if p, err := e.cfg.Catalog.Get(n.Profile); err == nil && len(p.BurnIn) > 0 {
		checks = checks[:0]
		for _, c := range p.BurnIn {
			checks = append(checks, c.Name)
		}
	}
	payload, _ := json.Marshal(map[string]any{"checks": checks})
	if _, err := e.db.PutTask(ctx, store.Task{Key: key, Node: n.Name, Kind: "burn-in", Payload: payload}, "controller"); err != nil {
		return nil, err
	}
	t, err := e.waitTask(ctx, key)
	if err != nil {
		return nil, err
	}
	if t.Status == store.TaskFailed {
		return t.Result, classed(model.ClassBurnInFailed, "%s: burn-in failed: %s", n.Name, t.Message)
	}
	return t.Result, nil
}

func (e *Edge) waitTask(ctx context.Context, key string) (store.Task, error) {
	for {
		woken, stop := e.db.TaskFinished(key) // before the read: a result after it still wakes us
		t, err := e.db.GetTask(ctx, key)
		if err != nil || t.Status == store.TaskDone || t.Status == store.TaskFailed {
			stop()
			return t, err
		}
		err = e.sleep(ctx, woken)
		stop()
		if err != nil {
			return t, fmt.Errorf("task %s still %s: %w", key, t.Status, err)
		}
	}
}

// sleep waits for woken (this process recorded what is awaited) or Poll
// (another controller may have), whichever comes first, or ctx's end.
func (e *Edge) sleep(ctx context.Context, woken <-chan struct{}) error {
	t := time.NewTimer(e.cfg.Poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-woken:
	case <-t.C:
	}
	return nil
}

// HandOff registers the node with the site's cluster, with the hardware
// facts validation verified.
func (e *Edge) HandOff(ctx context.Context, n model.Node, key string) error {
	if e.cfg.Cluster == nil {
		return classed(model.ClassHandOffFailed, "%s: no cluster is configured for hand-off: provision to Ready instead, or configure one (--slurm-conf or --kube-config)", n.Name)
	}
	inv, err := inventory.Parse(n.Inventory)
	if err != nil {
		return classed(model.ClassHandOffFailed, "%s: no verified inventory to hand off: %v; re-run inspection (revalidate)", n.Name, err)
	}
	return e.cfg.Cluster.HandOff(ctx, n, inv, key)
}

// Release drains the node in the cluster and removes it (nothing to do
// without a cluster).
func (e *Edge) Release(ctx context.Context, n model.Node, key string) error {
	if e.cfg.Cluster == nil {
		return nil
	}
	return e.cfg.Cluster.Release(ctx, n, "rackstrap: decommissioned", key)
}
