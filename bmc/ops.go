package bmc

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// PowerState is a machine's power state as Rackstrap names it.
type PowerState string

const (
	PowerOn         PowerState = "on"
	PowerOff        PowerState = "off"
	PowerTransition PowerState = "transitioning" // powering on or off
	PowerUnknown    PowerState = "unknown"
)

// parsePowerState reads bmclib's power state strings: Redfish "On"/"Off"/
// "PoweringOn", ipmitool "Chassis Power is on\n".
func parsePowerState(s string) PowerState {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "chassis power is ")
	switch s {
	case "on":
		return PowerOn
	case "off":
		return PowerOff
	case "poweringon", "poweringoff", "powering on", "powering off":
		return PowerTransition
	}
	return PowerUnknown
}

// PowerAction is what Power does.
type PowerAction string

const (
	ActionOn      PowerAction = "on"
	ActionOff     PowerAction = "off"      // immediate (ForceOff)
	ActionSoftOff PowerAction = "soft-off" // ask the OS to shut down (GracefulShutdown)
	ActionCycle   PowerAction = "cycle"    // off, then on; on for a machine that is off
)

// PowerState reads the machine's power state.
func (c *Client) PowerState(ctx context.Context, ep Endpoint) (PowerState, error) {
	var st PowerState
	_, err := c.run(ctx, "power status", ep, "", func(ctx context.Context, cn *conn) (Result, error) {
		if err := c.openBMCLib(ctx, cn); err != nil {
			return Result{}, err
		}
		var err error
		st, err = c.readPower(ctx, cn)
		return Result{After: string(st)}, err
	})
	return st, err
}

func (c *Client) readPower(ctx context.Context, cn *conn) (PowerState, error) {
	s, err := cn.bc.GetPowerState(ctx)
	if err != nil {
		return PowerUnknown, fmt.Errorf("read power state: %w", err)
	}
	return parsePowerState(s), nil
}

// Power changes the machine's power. It reads the state first: on for a
// machine that is on, or off/soft-off for one that is off, is a no-op
// (Changed false). After acting it waits until the BMC reports the wanted
// state twice in a row (a flapping or stuck BMC fails with
// ClassStateUnconfirmed). A cycle cannot be recognised as done by its
// state, so a replayed key is only caught by this Client's memory of
// carried-out keys: a lifecycle that must survive restarts should power
// off and on instead.
func (c *Client) Power(ctx context.Context, ep Endpoint, action PowerAction, key string) (Result, error) {
	var bmclibState string
	want := PowerOn
	switch action {
	case ActionOn:
		bmclibState = "on"
	case ActionOff:
		bmclibState, want = "off", PowerOff
	case ActionSoftOff:
		bmclibState, want = "soft", PowerOff
	case ActionCycle:
		bmclibState = "cycle"
	default:
		return Result{}, fmt.Errorf("power %q: unknown action; use on, off, soft-off or cycle", action)
	}
	return c.run(ctx, "power "+string(action), ep, key, func(ctx context.Context, cn *conn) (out Result, _ error) {
		var used []Quirk
		defer func() { out.Note = quirkNote(out.Note, used...) }()
		q, err := c.quirkSet(ctx, cn)
		if err != nil {
			return Result{}, err
		}
		if action == ActionCycle {
			if cycleType, quirk, err := c.cycleResetType(ctx, cn, q); err != nil {
				return Result{}, err
			} else if cycleType == "PowerCycle" {
				bmclibState = "reset" // bmclib: ResetType PowerCycle
				used = append(used, quirk)
			}
		}
		settle := c.cfg.SettleTimeout
		if q.has(QuirkPowerStateLag) {
			settle *= 4
			used = append(used, QuirkPowerStateLag)
		}
		if err := c.openBMCLib(ctx, cn); err != nil {
			return Result{}, err
		}
		before, err := c.readPower(ctx, cn)
		if err != nil {
			return Result{}, err
		}
		res := Result{Before: string(before)}
		if action != ActionCycle && before == want {
			// Confirm before doing nothing: a flapping BMC must not pass
			// for one that is already there.
			if again, err := c.readPower(ctx, cn); err != nil {
				return res, err
			} else if again != want {
				return res, fmt.Errorf("%w: power state flaps (read %s, then %s)", ErrStateUnconfirmed, before, again)
			}
		}
		switch {
		case action != ActionCycle && before == want:
			res.After, res.Note = string(before), "already "+string(want)
			return res, nil
		case action == ActionCycle && before == PowerOff:
			bmclibState = "on"
			res.Note = "machine was off: powered on"
			used = slices.DeleteFunc(used, func(q Quirk) bool { return q == QuirkCycleWithPowerCycle })
		}
		if _, err := cn.bc.SetPowerState(ctx, bmclibState); err != nil && !softOffQuirk(action, cn, err) {
			return res, fmt.Errorf("set power %s: %w", bmclibState, err)
		}
		res.Changed = true
		after, err := c.settle(ctx, cn, want, settle)
		res.After = string(after)
		return res, err
	})
}

// cycleResetType is the ResetType a power cycle uses: PowerCycle for a BMC
// the quirks table says needs it, or one that does not offer ForceRestart
// but offers PowerCycle (learned); otherwise bmclib's ForceRestart. Only
// Redfish has the choice.
func (c *Client) cycleResetType(ctx context.Context, cn *conn, q quirkSet) (string, Quirk, error) {
	if cn.rf == nil {
		return "", "", nil
	}
	if q.has(QuirkCycleWithPowerCycle) {
		return "PowerCycle", QuirkCycleWithPowerCycle, nil
	}
	id, err := cn.rf.readIdentity(ctx)
	if err != nil {
		return "", "", err
	}
	allowed := id.system.Actions.Reset.Allowable
	if len(allowed) > 0 && !slices.Contains(allowed, "ForceRestart") && slices.Contains(allowed, "PowerCycle") {
		cn.learn(QuirkCycleWithPowerCycle)
		return "PowerCycle", QuirkCycleWithPowerCycle, nil
	}
	return "ForceRestart", "", nil
}

// softOffQuirk recognises bmclib v2.3.5's Redfish soft-off, which sends
// GracefulShutdown successfully and then reports failure (its
// SystemPowerOff returns ok=false): the power state read afterwards decides.
func softOffQuirk(action PowerAction, cn *conn, err error) bool {
	return action == ActionSoftOff && cn.rf != nil && strings.Contains(err.Error(), "provider: gofish, failed to set power state")
}

// settle polls the power state until it reads want twice in a row, for at
// most timeout.
func (c *Client) settle(ctx context.Context, cn *conn, want PowerState, timeout time.Duration) (PowerState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last PowerState
	streak := 0
	for {
		st, err := c.readPower(ctx, cn)
		if err != nil && ctx.Err() == nil {
			return st, err
		}
		if st == want {
			streak++
		} else {
			streak = 0
		}
		last = st
		if streak >= 2 {
			return st, nil
		}
		t := time.NewTimer(c.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return last, fmt.Errorf("%w: power did not settle %s within %v (last read %s)", ErrStateUnconfirmed, want, timeout, last)
		case <-t.C:
		}
	}
}

// BootDevice is a one-time boot target.
type BootDevice string

const (
	BootPXE  BootDevice = "pxe"
	BootHTTP BootDevice = "uefi_http" // UEFI HTTP boot
	BootDisk BootDevice = "disk"
	BootCD   BootDevice = "cdrom" // virtual or physical CD
)

// redfishTarget is the Redfish BootSourceOverrideTarget of a device.
func (d BootDevice) redfishTarget() string {
	switch d {
	case BootPXE:
		return "Pxe"
	case BootHTTP:
		return "UefiHttp"
	case BootDisk:
		return "Hdd"
	case BootCD:
		return "Cd"
	}
	return ""
}

// SetBootOnce makes the next boot, only, start from dev, in UEFI or legacy
// mode. Over Redfish it reads the override first (already set: a no-op)
// and back after setting it; a BMC that will not take
// BootSourceOverrideMode (some HPE firmware) gets the override without it,
// and reads back whatever mode it keeps. Over IPMI the override is set
// unconditionally (setting it twice is harmless) and cannot be read back.
func (c *Client) SetBootOnce(ctx context.Context, ep Endpoint, dev BootDevice, uefi bool, key string) (Result, error) {
	if dev.redfishTarget() == "" {
		return Result{}, fmt.Errorf("boot device %q: unknown; use pxe, uefi_http, disk or cdrom", dev)
	}
	mode := "Legacy"
	if uefi {
		mode = "UEFI"
	}
	wantDesc := fmt.Sprintf("once %s %s", dev.redfishTarget(), mode)
	return c.run(ctx, "boot once "+string(dev), ep, key, func(ctx context.Context, cn *conn) (Result, error) {
		var res Result
		if cn.rf == nil && dev == BootHTTP {
			return res, fmt.Errorf("%w: IPMI has no UEFI HTTP boot device; use Redfish", ErrUnsupported)
		}
		if cn.rf != nil {
			id, err := cn.rf.readIdentity(ctx)
			if err != nil {
				return res, err
			}
			b := id.system.Boot
			res.Before = fmt.Sprintf("%s %s %s", strings.ToLower(b.BootSourceOverrideEnabled), b.BootSourceOverrideTarget, b.BootSourceOverrideMode)
			if b.BootSourceOverrideEnabled == "Once" && b.BootSourceOverrideTarget == dev.redfishTarget() && (b.BootSourceOverrideMode == mode || b.BootSourceOverrideMode == "") {
				res.After, res.Note = res.Before, "already set: "+wantDesc
				return res, nil
			}
		}
		q, err := c.quirkSet(ctx, cn)
		if err != nil {
			return res, err
		}
		if q.has(QuirkBootWithoutMode) {
			// The quirks table says this BMC refuses the mode: send the
			// override without it rather than a request it refuses.
			id, err := cn.rf.readIdentity(ctx)
			if err != nil {
				return res, err
			}
			patch := map[string]any{"Boot": map[string]string{"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": dev.redfishTarget()}}
			if err := cn.rf.patch(ctx, first(id.system.ODataID, "/redfish/v1/Systems/"+id.system.ID), patch); err != nil {
				return res, fmt.Errorf("set boot device: %w", err)
			}
			res.Note = quirkNote("", QuirkBootWithoutMode)
		} else {
			if err := c.openBMCLib(ctx, cn); err != nil {
				return res, err
			}
			if _, err := cn.bc.SetBootDevice(ctx, string(dev), false, uefi); err != nil {
				return res, fmt.Errorf("set boot device: %w", err)
			}
		}
		res.Changed = true
		if cn.rf == nil {
			res.After = wantDesc
			return res, nil
		}
		id, err := cn.rf.readIdentity(ctx)
		if err != nil {
			return res, fmt.Errorf("read back boot override: %w", err)
		}
		b := id.system.Boot
		res.After = fmt.Sprintf("%s %s %s", strings.ToLower(b.BootSourceOverrideEnabled), b.BootSourceOverrideTarget, b.BootSourceOverrideMode)
		if b.BootSourceOverrideEnabled != "Once" || b.BootSourceOverrideTarget != dev.redfishTarget() {
			return res, fmt.Errorf("%w: boot override reads %q after setting %q", ErrStateUnconfirmed, res.After, wantDesc)
		}
		if b.BootSourceOverrideMode != mode {
			note := "the BMC kept boot mode " + first(b.BootSourceOverrideMode, "unset")
			if q.has(QuirkBootWithoutMode) {
				note = quirkNote(note, QuirkBootWithoutMode)
			} else {
				cn.learn(QuirkBootWithoutMode) // bmclib had to drop the mode
			}
			res.Note = note
		}
		return res, nil
	})
}

// virtualCD finds the CD/DVD virtual media slot, under the manager or,
// like iDRAC, under the system.
// A BMC the quirks table lists with QuirkMediaUnderSystem is looked at
// under the system only (its managers are not read); others under their
// managers first, then the system, and a slot found only under the system
// is learned as that quirk.
func (c *Client) virtualCD(ctx context.Context, cn *conn) (rfVirtualMedia, error) {
	q, err := c.quirkSet(ctx, cn)
	if err != nil {
		return rfVirtualMedia{}, err
	}
	id, err := cn.rf.readIdentity(ctx)
	if err != nil {
		return rfVirtualMedia{}, err
	}
	var colls []string
	onSystem := q.has(QuirkMediaUnderSystem)
	if !onSystem {
		for _, m := range id.system.Links.ManagedBy {
			var mgr rfManager
			if err := cn.rf.get(ctx, m.ID, &mgr); err != nil {
				return rfVirtualMedia{}, err
			}
			colls = append(colls, mgr.VirtualMedia.ID)
		}
	}
	colls = append(colls, id.system.VirtualMedia.ID)
	for i, coll := range colls {
		var found *rfVirtualMedia
		err := cn.rf.each(ctx, coll, func(p string) error {
			var vm rfVirtualMedia
			if err := cn.rf.get(ctx, p, &vm); err != nil {
				return err
			}
			for _, t := range vm.MediaTypes {
				if (t == "CD" || t == "DVD") && found == nil {
					found = &vm
				}
			}
			return nil
		})
		if err != nil {
			return rfVirtualMedia{}, err
		}
		if found != nil {
			if !onSystem && i == len(colls)-1 && coll != "" {
				cn.learn(QuirkMediaUnderSystem)
			}
			return *found, nil
		}
	}
	return rfVirtualMedia{}, fmt.Errorf("%w: no CD/DVD virtual media slot", ErrUnsupported)
}

// InsertMedia inserts an ISO image (an http(s) URL) into the virtual CD. The
// same image already inserted is a no-op. Redfish only.
func (c *Client) InsertMedia(ctx context.Context, ep Endpoint, image, key string) (Result, error) {
	return c.run(ctx, "insert virtual media", ep, key, func(ctx context.Context, cn *conn) (out Result, _ error) {
		defer func() {
			if cn.q != nil && cn.q.has(QuirkMediaUnderSystem) {
				out.Note = quirkNote(out.Note, QuirkMediaUnderSystem)
			}
		}()
		if cn.rf == nil {
			return Result{}, fmt.Errorf("%w: virtual media needs Redfish", ErrUnsupported)
		}
		vm, err := c.virtualCD(ctx, cn)
		if err != nil {
			return Result{}, err
		}
		res := Result{Before: mediaState(vm)}
		if vm.Inserted && vm.Image == image {
			res.After, res.Note = res.Before, "already inserted"
			return res, nil
		}
		if t := vm.Actions.Insert.Target; cn.q != nil && cn.q.has(QuirkMediaUnderSystem) && t != "" {
			// bmclib would walk the managers first: act on the slot found,
			// ejecting another image first as bmclib does.
			if e := vm.Actions.Eject.Target; vm.Inserted && e != "" {
				if err := cn.rf.post(ctx, e, struct{}{}); err != nil {
					return res, fmt.Errorf("eject %s before inserting %s: %w", vm.Image, image, err)
				}
			}
			if err := cn.rf.post(ctx, t, map[string]any{"Image": image, "Inserted": true, "WriteProtected": true}); err != nil {
				return res, fmt.Errorf("insert %s: %w", image, err)
			}
		} else {
			if err := c.openBMCLib(ctx, cn); err != nil {
				return res, err
			}
			if _, err := cn.bc.SetVirtualMedia(ctx, "CD", image); err != nil {
				return res, fmt.Errorf("insert %s: %w", image, err)
			}
		}
		res.Changed = true
		if vm, err = c.virtualCD(ctx, cn); err != nil {
			return res, err
		}
		res.After = mediaState(vm)
		if !vm.Inserted || vm.Image != image {
			return res, fmt.Errorf("%w: virtual CD reads %q after inserting %s", ErrStateUnconfirmed, res.After, image)
		}
		return res, nil
	})
}

// EjectMedia ejects the virtual CD; an empty drive is a no-op. Redfish only.
func (c *Client) EjectMedia(ctx context.Context, ep Endpoint, key string) (Result, error) {
	return c.run(ctx, "eject virtual media", ep, key, func(ctx context.Context, cn *conn) (out Result, _ error) {
		defer func() {
			if cn.q != nil && cn.q.has(QuirkMediaUnderSystem) {
				out.Note = quirkNote(out.Note, QuirkMediaUnderSystem)
			}
		}()
		if cn.rf == nil {
			return Result{}, fmt.Errorf("%w: virtual media needs Redfish", ErrUnsupported)
		}
		vm, err := c.virtualCD(ctx, cn)
		if err != nil {
			return Result{}, err
		}
		res := Result{Before: mediaState(vm)}
		if !vm.Inserted {
			res.After, res.Note = res.Before, "already empty"
			return res, nil
		}
		if t := vm.Actions.Eject.Target; cn.q != nil && cn.q.has(QuirkMediaUnderSystem) && t != "" {
			if err := cn.rf.post(ctx, t, struct{}{}); err != nil {
				return res, fmt.Errorf("eject: %w", err)
			}
		} else {
			if err := c.openBMCLib(ctx, cn); err != nil {
				return res, err
			}
			if _, err := cn.bc.SetVirtualMedia(ctx, "CD", ""); err != nil {
				return res, fmt.Errorf("eject: %w", err)
			}
		}
		res.Changed = true
		if vm, err = c.virtualCD(ctx, cn); err != nil {
			return res, err
		}
		res.After = mediaState(vm)
		if vm.Inserted {
			return res, fmt.Errorf("%w: virtual CD still holds %s", ErrStateUnconfirmed, vm.Image)
		}
		return res, nil
	})
}

func mediaState(vm rfVirtualMedia) string {
	if !vm.Inserted {
		return "empty"
	}
	return "inserted " + vm.Image
}

// Inventory reads the machine's hardware and firmware as the BMC reports
// them (Redfish only), with Source OutOfBand. Rackstrap's own reader walks
// the tree; bmclib's inventory fills what the walk left empty, and is not
// read when the walk left nothing empty.
func (c *Client) Inventory(ctx context.Context, ep Endpoint) (*inventory.Inventory, error) {
	var inv *inventory.Inventory
	_, err := c.run(ctx, "inventory", ep, "", func(ctx context.Context, cn *conn) (Result, error) {
		if cn.rf == nil {
			return Result{}, fmt.Errorf("%w: inventory needs Redfish", ErrUnsupported)
		}
		var err error
		if inv, err = cn.rf.readInventory(ctx, cn.tgt.host); err != nil {
			return Result{}, err
		}
		if hasGaps(inv) {
			if err := c.openBMCLib(ctx, cn); err != nil {
				return Result{}, err
			}
			// bmclib only recognises Dell/Supermicro/ASRock/OpenBMC resource
			// ids; elsewhere it returns little, which is fine for a filler.
			if dev, err := cn.bc.Inventory(ctx); err == nil {
				fillFrom(inv, FromCommonDevice(dev))
			}
		}
		inv.CollectedAt = time.Now().UTC()
		return Result{}, nil
	})
	if err != nil {
		return nil, err
	}
	return inv, nil
}

// Identity is what a BMC tells about itself and its machine.
type Identity struct {
	Vendor         string // the BMC's vendor (ServiceRoot.Vendor)
	Product        string
	RedfishVersion string
	ServiceUUID    string
	Manufacturer   string // the system's
	Model          string
	Serial         string
	UUID           string
	PowerState     PowerState
	// MACs are the host's network interfaces (the system's
	// EthernetInterfaces), normalized; none when the BMC lists none.
	MACs       []string
	CertSHA256 string
	// Quirks are the vendor behaviours the client adapts to on this BMC
	// (the quirks table's, and what it learned of the model).
	Quirks []Quirk
}

// Identify reads the service root, the system's identity and its host
// MACs (Redfish only): enough to enroll a machine, in four requests and one
// more per network interface.
func (c *Client) Identify(ctx context.Context, ep Endpoint) (Identity, error) {
	var out Identity
	res, err := c.run(ctx, "identify", ep, "", func(ctx context.Context, cn *conn) (Result, error) {
		if cn.rf == nil {
			return Result{}, fmt.Errorf("%w: identify needs Redfish", ErrUnsupported)
		}
		id, err := cn.rf.readIdentity(ctx)
		if err != nil {
			return Result{}, err
		}
		out = identityOf(id)
		nics, err := cn.rf.readNICs(ctx, id.system)
		if err != nil {
			return Result{}, fmt.Errorf("read the host's network interfaces: %w", err)
		}
		for _, n := range nics {
			out.MACs = append(out.MACs, n.MAC)
		}
		out.Quirks = c.quirkNames(cn)
		return Result{}, nil
	})
	out.CertSHA256 = res.CertSHA256
	return out, err
}

func identityOf(id *identity) Identity {
	return Identity{
		Vendor: id.root.Vendor, Product: id.root.Product, RedfishVersion: id.root.RedfishVersion, ServiceUUID: strings.ToLower(id.root.UUID),
		Manufacturer: id.system.Manufacturer, Model: id.system.Model, Serial: strings.TrimSpace(id.system.SerialNumber),
		UUID: strings.ToLower(id.system.UUID), PowerState: parsePowerState(id.system.PowerState),
	}
}

// SELEntry is one System Event Log record.
type SELEntry struct {
	ID, Created, Description, Message string
}

// SEL reads the System Event Log.
func (c *Client) SEL(ctx context.Context, ep Endpoint) ([]SELEntry, error) {
	var out []SELEntry
	_, err := c.run(ctx, "read event log", ep, "", func(ctx context.Context, cn *conn) (Result, error) {
		if err := c.openBMCLib(ctx, cn); err != nil {
			return Result{}, err
		}
		entries, err := cn.bc.GetSystemEventLog(ctx)
		if err != nil {
			return Result{}, err
		}
		for _, e := range entries {
			var s SELEntry
			fields := []*string{&s.ID, &s.Created, &s.Description, &s.Message}
			for i := range min(len(e), len(fields)) {
				*fields[i] = e[i]
			}
			out = append(out, s)
		}
		// gofish fetches entries concurrently: put numbered records back in order.
		slices.SortStableFunc(out, func(a, b SELEntry) int {
			x, errA := strconv.Atoi(a.ID)
			y, errB := strconv.Atoi(b.ID)
			if errA != nil || errB != nil {
				return 0
			}
			return cmp.Compare(x, y)
		})
		return Result{}, nil
	})
	return out, err
}

// ClearSEL clears the System Event Log. Clearing is its own idempotent
// effect: a replay clears entries logged since, which is what was asked.
func (c *Client) ClearSEL(ctx context.Context, ep Endpoint, key string) (Result, error) {
	return c.run(ctx, "clear event log", ep, key, func(ctx context.Context, cn *conn) (Result, error) {
		q, err := c.quirkSet(ctx, cn)
		if err != nil {
			return Result{}, err
		}
		if err := c.openBMCLib(ctx, cn); err != nil {
			return Result{}, err
		}
		res := Result{Changed: true}
		if q.has(QuirkLogsUnderManager) {
			// The quirks table says the logs are under the manager only,
			// where bmclib does not clear: clear them there directly.
			if err := cn.clearManagerLogs(ctx); err != nil {
				return res, err
			}
			res.Note = quirkNote("", QuirkLogsUnderManager)
		} else if err := cn.bc.ClearSystemEventLog(ctx); err != nil {
			return Result{}, err
		}
		// bmclib clears the logs under Chassis and reads those under
		// Managers; a BMC whose chassis has no log would pass for cleared.
		// A cleared log holds at most its "log cleared" record.
		entries, err := cn.bc.GetSystemEventLog(ctx)
		if err != nil {
			return res, fmt.Errorf("read back event log: %w", err)
		}
		if len(entries) > 1 && cn.rf != nil && !q.has(QuirkLogsUnderManager) {
			// A BMC nobody listed with its logs under the manager only:
			// clear those, and remember its model.
			if err := cn.clearManagerLogs(ctx); err != nil {
				return res, err
			}
			cn.learn(QuirkLogsUnderManager)
			if entries, err = cn.bc.GetSystemEventLog(ctx); err != nil {
				return res, fmt.Errorf("read back event log: %w", err)
			}
		}
		if len(entries) > 1 {
			return res, fmt.Errorf("%w: the event log still holds %d entries after clearing", ErrStateUnconfirmed, len(entries))
		}
		res.After = "cleared"
		return res, nil
	})
}

// ResetBMC restarts the BMC itself (Redfish GracefulRestart, IPMI cold
// reset). The BMC is unreachable for a while afterwards.
func (c *Client) ResetBMC(ctx context.Context, ep Endpoint, key string) (Result, error) {
	return c.run(ctx, "reset bmc", ep, key, func(ctx context.Context, cn *conn) (Result, error) {
		if err := c.openBMCLib(ctx, cn); err != nil {
			return Result{}, err
		}
		rt := "GracefulRestart"
		if cn.ep.proto() == IPMI {
			rt = "cold"
		}
		if _, err := cn.bc.ResetBMC(ctx, rt); err != nil {
			return Result{}, err
		}
		return Result{Changed: true, After: "restarting"}, nil
	})
}

// clearManagerLogs posts LogService.ClearLog to every log service of the
// system's managers that offers it.
func (cn *conn) clearManagerLogs(ctx context.Context) error {
	id, err := cn.rf.readIdentity(ctx)
	if err != nil {
		return err
	}
	for _, m := range id.system.Links.ManagedBy {
		var mgr rfManager
		if err := cn.rf.get(ctx, m.ID, &mgr); err != nil {
			return err
		}
		if err := cn.rf.each(ctx, mgr.LogServices.ID, func(p string) error {
			var ls rfLogService
			if err := cn.rf.get(ctx, p, &ls); err != nil {
				return err
			}
			if t := ls.Actions.ClearLog.Target; t != "" {
				return cn.rf.post(ctx, t, struct{}{})
			}
			return nil
		}); err != nil {
			return fmt.Errorf("clear %s logs: %w", m.ID, err)
		}
	}
	return nil
}
