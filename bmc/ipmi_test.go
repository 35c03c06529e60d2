package bmc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc/ipmisim"
)

// Power and boot device through bmclib's ipmitool provider against a real
// IPMI BMC (OpenIPMI's ipmi_sim).
func TestIPMIAgainstIPMISim(t *testing.T) {
	t.Parallel()
	sim := ipmisim.Start(t, "admin", "password")
	c := New(Config{Timeout: 20 * time.Second, SettleTimeout: 5 * time.Second, PollInterval: 50 * time.Millisecond, Logger: testLogger(t)})
	ep := Endpoint{Address: sim.Addr.String(), Protocol: IPMI, Username: "admin", Password: "password"}
	ctx := context.Background()

	info, err := ProbeIPMI(ctx, sim.Addr)
	if err != nil || !info.IPMI20 {
		t.Errorf("ProbeIPMI = %+v, %v; want an IPMI 2.0 BMC", info, err)
	}
	if st, err := c.PowerState(ctx, ep); err != nil || st != PowerOff {
		t.Fatalf("PowerState = %v, %v; want off", st, err)
	}
	res, err := c.SetBootOnce(ctx, ep, BootPXE, true, "ipmi/boot/1")
	if err != nil || !res.Changed || sim.BootDev() != "pxe" {
		t.Errorf("SetBootOnce = %+v, %v; ipmi_sim boot device %q", res, err, sim.BootDev())
	}
	if _, err := c.SetBootOnce(ctx, ep, BootHTTP, true, ""); !errors.Is(err, ErrUnsupported) {
		t.Errorf("SetBootOnce(uefi_http) over IPMI = %v, want unsupported", err)
	}
	if res, err := c.Power(ctx, ep, ActionOn, "ipmi/on/1"); err != nil || !res.Changed || sim.Power() != "1" {
		t.Errorf("Power on = %+v, %v; ipmi_sim power %q", res, err, sim.Power())
	}
	if res, err := c.Power(ctx, ep, ActionOn, "ipmi/on/2"); err != nil || res.Changed {
		t.Errorf("Power on again = %+v, %v; want a no-op", res, err)
	}
	if res, err := c.Power(ctx, ep, ActionOff, "ipmi/off/1"); err != nil || !res.Changed || sim.Power() != "0" {
		t.Errorf("Power off = %+v, %v; ipmi_sim power %q", res, err, sim.Power())
	}
	if _, err := c.SEL(ctx, ep); err != nil {
		t.Errorf("SEL: %v", err)
	}
	if _, err := c.ClearSEL(ctx, ep, "ipmi/sel/1"); err != nil {
		t.Errorf("ClearSEL: %v", err)
	}
	if _, err := c.Inventory(ctx, ep); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Inventory over IPMI = %v, want unsupported", err)
	}

	// Wrong password: the BMC answers, so it is an auth failure.
	bad := ep
	bad.Password = "wrong"
	_, err = c.PowerState(ctx, bad)
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Errorf("PowerState with a wrong password = %v, want *AuthError", err)
	}
	// Nothing there: unreachable, within the deadline.
	short := New(Config{Timeout: 3 * time.Second, Logger: testLogger(t)})
	gone := ep
	gone.Address = "127.0.0.1:1"
	start := time.Now()
	if _, err := short.PowerState(ctx, gone); !errors.Is(err, ErrUnreachable) || time.Since(start) > 8*time.Second {
		t.Errorf("PowerState of nothing = %v after %v, want unreachable within the deadline", err, time.Since(start))
	}
}

func TestParseAuthCapsReply(t *testing.T) {
	t.Parallel()
	// A reply laid out as ipmi_sim answers (TestIPMIAgainstIPMISim parses a live one).
	reply := []byte{0x06, 0x00, 0xff, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
		0x81, 0x1c, 0x63, 0x20, 0x00, 0x38, 0x00, 0x01, 0x95, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0}
	reply[len(reply)-1] = checksum(reply[17 : len(reply)-1])
	info, err := parseAuthCapsReply(reply)
	if err != nil {
		t.Fatal(err)
	}
	if !info.IPMI20 || info.Channel != 1 || len(info.AuthTypes) != 3 {
		t.Errorf("parseAuthCapsReply = %+v", info)
	}
	for name, b := range map[string][]byte{
		"empty": nil, "not rmcp": []byte("HTTP/1.1 200 OK"), "short": reply[:20],
		"bad checksum": append(append([]byte{}, reply[:len(reply)-1]...), reply[len(reply)-1]+1),
	} {
		if _, err := parseAuthCapsReply(b); err == nil {
			t.Errorf("%s: parseAuthCapsReply succeeded", name)
		}
	}
}
