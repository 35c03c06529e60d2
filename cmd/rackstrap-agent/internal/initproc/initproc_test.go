//go:build linux

package initproc

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatchAlias(t *testing.T) {
	t.Parallel()
	aliases, err := ParseAliases(strings.NewReader(`# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
alias crypto-crc32c crc32c_generic
alias fs-ext4 ext4
`))
	if err != nil {
		t.Fatal(err)
	}
	for modalias, want := range map[string][]string{
		"pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00": {"virtio_pci"},
		"virtio:d00000001v00001AF4":                             {"virtio_net"},
		"virtio:d00000002v00001AF4":                             {"virtio_blk"},
		"crypto-crc32c":                                         {"crc32c_generic"},
		"pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00": nil,
	} {
		if diff := cmp.Diff(want, MatchAlias(aliases, modalias)); diff != "" {
			t.Errorf("MatchAlias(%s) (-want +got):\n%s", modalias, diff)
		}
	}
}

func TestParseDeps(t *testing.T) {
	t.Parallel()
	deps, err := ParseDeps(strings.NewReader("kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\nkernel/net/core/failover.ko:\nkernel/crypto/crc32c_generic.ko:\n"), "/lib/modules/6.1.0-56-amd64")
	if err != nil {
		t.Fatal(err)
	}
	m := deps["virtio_net"]
	if m.path != "/lib/modules/6.1.0-56-amd64/kernel/drivers/net/virtio_net.ko" || !cmp.Equal(m.deps, []string{"net_failover", "failover"}) {
		t.Errorf("virtio_net = %+v", m)
	}
	if _, ok := deps["crc32c_generic"]; !ok || len(deps) != 3 {
		t.Errorf("deps = %v", deps)
	}
	// a module that is not in the initramfs fails with its name, loading nothing
	loaded := map[string]error{}
	if err := loadModule(deps, "virtio_net", loaded, 0); err == nil || !strings.Contains(err.Error(), "net_failover") {
		t.Errorf("loadModule(virtio_net) = %v, want an error naming net_failover", err)
	}
}

func TestGPTPartitionByGUID(t *testing.T) {
	t.Parallel()
	const ss = 512
	disk := make([]byte, 64*ss)
	hdr := disk[ss:]
	copy(hdr, "EFI PART")
	binary.LittleEndian.PutUint64(hdr[72:], 2) // entries at LBA 2
	binary.LittleEndian.PutUint32(hdr[80:], 4)
	binary.LittleEndian.PutUint32(hdr[84:], 128)
	// entry 2's unique GUID 0fc63daf-8483-4772-8e79-3d69d8477de4 (mixed endian)
	guid := []byte{0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4}
	copy(disk[2*ss+128+16:], guid)
	if got := GUIDString(guid); got != "0fc63daf-8483-4772-8e79-3d69d8477de4" {
		t.Fatalf("GUIDString = %s", got)
	}
	n, err := GPTPartitionByGUID(bytes.NewReader(disk), ss, "0fc63daf-8483-4772-8e79-3d69d8477de4")
	if err != nil || n != 2 {
		t.Errorf("GPTPartitionByGUID = %d, %v; want 2", n, err)
	}
	if n, err := GPTPartitionByGUID(bytes.NewReader(disk), ss, "00000000-0000-0000-0000-000000000001"); err != nil || n != 0 {
		t.Errorf("GPTPartitionByGUID(absent) = %d, %v; want 0", n, err)
	}
	if _, err := GPTPartitionByGUID(bytes.NewReader(make([]byte, 4*ss)), ss, "x"); err == nil {
		t.Error("GPTPartitionByGUID on a disk without GPT succeeded")
	}
}

func TestParam(t *testing.T) {
	t.Parallel()
	cl := `initrd=initrd.img console=ttyS0 root=PARTUUID=abc rw rackstrap.server="http://10.0.0.1:8080" root=/dev/vda2 -- rackstrap.net=off`
	for key, want := range map[string]string{"root": "/dev/vda2", "rackstrap.server": "http://10.0.0.1:8080", "rackstrap.net": "", "console": "ttyS0", "init": ""} {
		if got := Param(cl, key); got != want {
			t.Errorf("Param(%s) = %q, want %q", key, got, want)
		}
	}
}

// The init's parsers read files from the image (modules.alias,
// modules.dep), the disk (GPT) and the kernel command line: none may panic.
func FuzzParseModules(f *testing.F) {
	f.Add("alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\nalias crypto-crc32c crc32c_generic\n", "virtio:d00000001v00001AF4")
	f.Add("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n", "pci:v[")
	f.Add("alias [ x\nalias * y\n:\n", "")
	f.Fuzz(func(t *testing.T, file, modalias string) {
		aliases, err := ParseAliases(strings.NewReader(file))
		if err == nil {
			MatchAlias(aliases, modalias)
		}
		if deps, err := ParseDeps(strings.NewReader(file), "/lib/modules/x"); err == nil {
			for name := range deps {
				_ = loadModuleDry(deps, name)
			}
		}
		Param(file, modalias)
	})
}

// loadModuleDry walks loadModule's dependency order without loading.
func loadModuleDry(deps map[string]module, name string) int {
	seen := map[string]bool{}
	var walk func(string, int) int
	walk = func(n string, depth int) int {
		if seen[n] || depth > 32 {
			return 0
		}
		seen[n] = true
		c := 1
		for _, d := range deps[n].deps {
			c += walk(d, depth+1)
		}
		return c
	}
	return walk(name, 0)
}

func FuzzGPTPartitionByGUID(f *testing.F) {
	disk := make([]byte, 8*512)
	copy(disk[512:], "EFI PART")
	binary.LittleEndian.PutUint64(disk[512+72:], 2)
	binary.LittleEndian.PutUint32(disk[512+80:], 4)
	binary.LittleEndian.PutUint32(disk[512+84:], 128)
	f.Add(disk)
	f.Add(make([]byte, 100))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = GPTPartitionByGUID(bytes.NewReader(b), 512, "0fc63daf-8483-4772-8e79-3d69d8477de4")
	})
}
