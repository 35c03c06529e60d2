package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/rackstrap/rackstrap/pxe/dhcp"
)

// load runs DORA exchanges as a relay agent (giaddr = local, from port 67)
// with distinct MACs from conc goroutines for d, and writes "mac ip" for
// every ACK received to out. It is the durability proof's client: every line
// must be in the server's journal after a SIGKILL.
func load(ctx context.Context, local, server string, conc int, d time.Duration, out string) error {
	la := netip.MustParseAddr(local)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: la.AsSlice(), Port: 67})
	if err != nil {
		return err
	}
	defer conn.Close()
	srv := netip.AddrPortFrom(netip.MustParseAddr(server), 67)
	var mu sync.Mutex
	waiting := map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			mu.Lock()
			ch := waiting[m.TransactionID]
			mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		}
	}()
	exchange := func(m *dhcpv4.DHCPv4, want dhcpv4.MessageType) *dhcpv4.DHCPv4 {
		ch := make(chan *dhcpv4.DHCPv4, 1)
		mu.Lock()
		waiting[m.TransactionID] = ch
		mu.Unlock()
		defer func() { mu.Lock(); delete(waiting, m.TransactionID); mu.Unlock() }()
		m.GatewayIPAddr = la.AsSlice()
		if _, err := conn.WriteToUDPAddrPort(m.ToBytes(), srv); err != nil {
			return nil
		}
		select {
		case r := <-ch:
			if r.MessageType() == want {
				return r
			}
		case <-time.After(time.Second):
		}
		return nil
	}
	var next atomic.Uint32
	var acked sync.Map
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				mac := net.HardwareAddr{0x02, 0x10, 0, 0, 0, 0}
				binary.BigEndian.PutUint32(mac[2:], i)
				disc, _ := dhcpv4.NewDiscovery(mac)
				off := exchange(disc, dhcpv4.MessageTypeOffer)
				if off == nil {
					continue
				}
				req, _ := dhcpv4.NewRequestFromOffer(off)
				if ack := exchange(req, dhcpv4.MessageTypeAck); ack != nil {
					acked.Store(mac.String(), ack.YourIPAddr.String())
				}
			}
		})
	}
	wg.Wait()
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	n := 0
	acked.Range(func(k, v any) bool { fmt.Fprintf(w, "%s %s\n", k, v); n++; return true })
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Printf("acked %d in %v: %.0f DORA/s\n", n, d, float64(n)/d.Seconds())
	return f.Close()
}

// check verifies that every acknowledged "mac ip" line is a bound lease in
// the journal.
func check(ctx context.Context, journal, ackedFile string) error {
	ls, err := dhcp.NewFileStore(journal).Load(ctx)
	if err != nil {
		return err
	}
	have := map[string]string{}
	for _, l := range ls {
		if l.State == dhcp.Bound {
			have[l.MAC] = l.IP.String()
		}
	}
	f, err := os.Open(ackedFile)
	if err != nil {
		return err
	}
	defer f.Close()
	var missing []string
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var mac, ip string
		fmt.Sscan(sc.Text(), &mac, &ip)
		n++
		if have[mac] != ip {
			missing = append(missing, mac+" "+ip)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return fmt.Errorf("%d of %d acknowledged leases missing from the journal after SIGKILL, e.g. %v", len(missing), n, missing[:min(5, len(missing))])
	}
	fmt.Printf("durable: all %d acknowledged leases present after SIGKILL (journal holds %d)\n", n, len(have))
	return nil
}
