package bmc_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

// A rack of three simulated BMCs, one of them powered on with a one-time
// PXE boot, as the lifecycle would do it.
func Example() {
	fleet, err := redfishsim.StartSample(redfishsim.Config{First: netip.MustParseAddr("127.10.200.1")}, 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fleet.Close()
	sim := fleet.BMCs()[1]
	sim.OnBoot(func(e redfishsim.BootEvent) {
		fmt.Printf("host %s boots from %s (%s)\n", e.BMC.Serial(), e.Target, e.Mode)
	})

	c := bmc.New(bmc.Config{})
	ep := bmc.Endpoint{Address: sim.Endpoint(), Username: "admin", Password: "password"}
	ctx := context.Background()
	if _, err := c.SetBootOnce(ctx, ep, bmc.BootPXE, true, "rsim1/boot/1"); err != nil {
		fmt.Println(err)
		return
	}
	for _, key := range []string{"rsim1/power-on/1", "rsim1/power-on/2"} {
		res, err := c.Power(ctx, ep, bmc.ActionOn, key)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(strings.TrimSpace(fmt.Sprintf("power on: changed=%v %s -> %s %s", res.Changed, res.Before, res.After, res.Note)))
	}
	inv, err := c.Inventory(ctx, ep)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(inv.System.Serial, len(inv.GPUs), "GPUs", inv.NICs[0].MAC)
	// Output:
	// host RSIM000001 boots from Pxe (UEFI)
	// power on: changed=true off -> on
	// power on: changed=false on -> on already on
	// RSIM000001 8 GPUs 02:52:10:00:00:01
}
