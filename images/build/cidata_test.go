package build

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/images/seed"
	"github.com/rackstrap/rackstrap/images/spec"
)

// checkCIDATA checks the seed partition of a built or seeded disk with
// tools that are not ours: sgdisk names partition 3 CIDATA, fsck.vfat finds
// its FAT32 clean, blkid and mlabel read the label cloud-init looks for,
// and mdir lists exactly the files in want, in directory order (none on
// a fresh build).
func checkCIDATA(t *testing.T, raw, part string, want []string) string {
	t.Helper()
	if out := run(t, "sgdisk", "-v", raw); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	info := run(t, "sgdisk", "-i", "3", raw)
	if !strings.Contains(info, "Partition name: '"+seed.PartitionName+"'") {
		t.Errorf("sgdisk -i 3: partition 3 is not named %s:\n%s", seed.PartitionName, info)
	}
	extractPartition(t, raw, 3, part)
	run(t, "fsck.vfat", "-n", part)
	if out := run(t, "blkid", "-p", "-o", "export", part); !strings.Contains(out, "LABEL=CIDATA") || !strings.Contains(out, "TYPE=vfat") {
		t.Errorf("blkid -p: want a vfat filesystem labelled CIDATA (NoCloud looks for it):\n%s", out)
	}
	if out := run(t, "mlabel", "-s", "-i", part, "::"); !strings.Contains(out, "CIDATA") {
		t.Errorf("mlabel -s = %q, want CIDATA", out)
	}
	mdir := run(t, "mdir", "-b", "-i", part, "::")
	var got []string
	for _, l := range strings.Fields(mdir) {
		got = append(got, strings.TrimPrefix(l, "::/"))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("mdir -b of CIDATA = %q, want %q", got, want)
	}
	return mdir
}

// partHash is the sha256 of partition n of a GPT disk.
func partHash(t *testing.T, raw string, n int) [32]byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "part")
	extractPartition(t, raw, n, p)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

const testUserData = "#cloud-config\nhostname: r12-n01\nwrite_files:\n  - path: /etc/kubernetes/rackstrap-join.yaml\n    owner: root:root\n    permissions: \"0600\"\n    content: |\n      apiVersion: kubeadm.k8s.io/v1beta4\n      kind: JoinConfiguration\nruncmd:\n  - [kubeadm, join, --config, /etc/kubernetes/rackstrap-join.yaml]\n"

// TestSeedOnBuiltDisk writes a node's NoCloud seed into the CIDATA
// partition of a disk images/build made, and reads it back with mtools;
// cloud-init's own schema check accepts the user data read back; the ESP
// and the root are untouched; writing the same seed again changes no byte.
func TestSeedOnBuiltDisk(t *testing.T) {
	t.Parallel()
	need(t, "sgdisk", "fsck.vfat", "mdir", "mtype", "mlabel", "mcopy", "blkid", "cloud-init")
	// The partition asked for by the spec (outputs.disk.cidata_size).
	dir := fixture(t, "  disk: {size: 96MiB, esp_size: 34MiB, cidata_size: 34MiB}\n")
	r := buildWith(t, dir, Options{OutDir: filepath.Join(dir, "out")})
	raw := r.Files["tiny.raw"]
	scratch := t.TempDir()
	checkCIDATA(t, raw, filepath.Join(scratch, "empty.img"), nil)

	disk := filepath.Join(scratch, "disk.raw")
	copyFile(t, raw, disk)
	espBefore, rootBefore := partHash(t, disk, 1), partHash(t, disk, 2)
	s := seed.Seed{UserData: testUserData, MetaData: seed.MetaData("rackstrap-r12-n01", "r12-n01"),
		NetworkConfig: "version: 2\nethernets:\n  all:\n    match: {name: \"en*\"}\n    dhcp4: true\n"}
	p, err := seed.Write(disk, s)
	if err != nil {
		t.Fatalf("seed.Write() = %v", err)
	}
	if p.Index != 3 {
		t.Errorf("seed.Write wrote partition %d, want 3", p.Index)
	}
	part := filepath.Join(scratch, "cidata.img")
	checkCIDATA(t, disk, part, []string{"meta-data", "user-data", "network-config"})
	for name, want := range map[string]string{"user-data": s.UserData, "meta-data": s.MetaData, "network-config": s.NetworkConfig} {
		if got := run(t, "mtype", "-i", part, "::"+name); got != want {
			t.Errorf("mtype %s = %q, want %q", name, got, want)
		}
	}
	ud := filepath.Join(scratch, "user-data")
	if err := os.WriteFile(ud, []byte(run(t, "mtype", "-i", part, "::user-data")), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := execCtx(ctx, "cloud-init", "schema", "--config-file", ud); err != nil || !strings.Contains(out, "Valid") {
		t.Errorf("cloud-init schema --config-file (user-data read back): %v\n%s", err, out)
	}
	nocloudReads(t, part, s)
	if err := seed.Verify(disk, s); err != nil {
		t.Errorf("seed.Verify() = %v", err)
	}
	if espBefore != partHash(t, disk, 1) || rootBefore != partHash(t, disk, 2) {
		t.Error("writing the seed changed the ESP or the root partition")
	}
	// the same seed again: the same bytes (a task run again after a crash)
	before := partHash(t, disk, 3)
	if _, err := seed.Write(disk, s); err != nil {
		t.Fatalf("seed.Write() again = %v", err)
	}
	if before != partHash(t, disk, 3) {
		t.Error("writing the same seed twice left different bytes")
	}
	// a smaller seed replaces the old one entirely
	s2 := seed.Seed{UserData: "#cloud-config\nhostname: other\n", MetaData: seed.MetaData("i-2", "other")}
	if _, err := seed.Write(disk, s2); err != nil {
		t.Fatalf("seed.Write(smaller) = %v", err)
	}
	checkCIDATA(t, disk, part, []string{"meta-data", "user-data"})
	if got, err := seed.Read(disk); err != nil || got != s2 {
		t.Errorf("seed.Read() = %+v, %v; want %+v", got, err, s2)
	}
}

// TestSeedNeedsCIDATA: a disk built without cidata_size has no seed
// partition, and writing a seed to it fails clearly and changes nothing.
func TestSeedNeedsCIDATA(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "  disk: {size: 64MiB, esp_size: 34MiB}\n")
	r := build(t, dir, filepath.Join(dir, "out"))
	raw := r.Files["tiny.raw"]
	_, before, err := hashFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	_, err = seed.Write(raw, seed.Seed{UserData: testUserData, MetaData: seed.MetaData("i-1", "n1")})
	if !errors.Is(err, seed.ErrNoSeedPartition) || !strings.Contains(err.Error(), "cidata_size") {
		t.Errorf("seed.Write(disk without CIDATA) = %v, want ErrNoSeedPartition naming outputs.disk.cidata_size", err)
	}
	if _, after, err := hashFile(raw); err != nil || after != before {
		t.Errorf("a refused seed write changed the disk (%v)", err)
	}
}

func execCtx(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// TestCIDATASizeRefused: a seed partition too small for FAT32, not a whole
// number of MiB, or without a disk output is refused before anything is
// written.
func TestCIDATASizeRefused(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		outputs string
		size    int64
		want    string
	}{
		"too small":      {"  disk: {size: 96MiB, esp_size: 34MiB}\n", 8 << 20, "at least 33MiB"},
		"not MiB":        {"  disk: {size: 96MiB, esp_size: 34MiB}\n", 40<<20 + 512, "whole number of MiB"},
		"no disk":        {"  netboot: {}\n", 34 << 20, "add outputs.disk"},
		"disk too small": {"  disk: {size: 72MiB, esp_size: 34MiB}\n", 34 << 20, "raise outputs.disk.size"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := fixture(t, tc.outputs)
			out := filepath.Join(dir, "out")
			_, err := Build(context.Background(), loadSpec(t, dir), Options{OutDir: out, CIDATASize: spec.Size(tc.size)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build(CIDATASize %d) = %v, want an error containing %q", tc.size, err, tc.want)
			}
			if m, _ := filepath.Glob(filepath.Join(out, "*.raw")); len(m) != 0 {
				t.Errorf("a refused build left %v", m)
			}
		})
	}
}

// nocloudScript has cloud-init's own NoCloud datasource read a seed
// directory (the files mcopy took out of CIDATA) the way it reads a
// mounted CIDATA filesystem at boot, and parse the network configuration
// with cloud-init's network-state parser. Device probing is off (fs_label
// None): the test looks at no disk of the machine.
const nocloudScript = `import sys, json, tempfile
from cloudinit import helpers
from cloudinit.net import network_state
from cloudinit.sources.DataSourceNoCloud import DataSourceNoCloud
tmp = tempfile.mkdtemp(dir=sys.argv[2])
paths = helpers.Paths({"cloud_dir": tmp + "/cloud", "run_dir": tmp + "/run"})
ds = DataSourceNoCloud(sys_cfg={"datasource": {"NoCloud": {"fs_label": None}}}, distro=None, paths=paths)
ds.seed_dirs = [sys.argv[1]]
if not ds._get_data():
    sys.exit("NoCloud found no seed in " + sys.argv[1])
if ds.network_config:
    network_state.parse_net_config_data(ds.network_config, skip_broken=False)
ud = ds.userdata_raw
print(json.dumps({"metadata": ds.metadata, "userdata": ud.decode() if isinstance(ud, bytes) else ud, "network": ds.network_config}))
`

// nocloudReads copies the seed out of the CIDATA partition image with
// mcopy and checks that cloud-init's NoCloud datasource (run with the
// Python that runs cloud-init) reads back what was written.
func nocloudReads(t *testing.T, part string, s seed.Seed) {
	t.Helper()
	dir := t.TempDir()
	seedDir := filepath.Join(dir, "seed")
	if err := os.Mkdir(seedDir, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "mcopy", "-n", "-i", part, "::/*", seedDir)
	ci, err := exec.LookPath("cloud-init")
	if err != nil {
		t.Fatal("cloud-init is not installed; install the Debian package cloud-init (test/apt-packages.txt)")
	}
	head, err := os.ReadFile(ci)
	if err != nil {
		t.Fatal(err)
	}
	py := "/usr/bin/python3"
	if l, _, _ := strings.Cut(string(head), "\n"); strings.HasPrefix(l, "#!") {
		py = strings.Fields(strings.TrimPrefix(l, "#!"))[0]
	}
	script := filepath.Join(dir, "nocloud.py")
	if err := os.WriteFile(script, []byte(nocloudScript), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, script, seedDir, dir)
	cmd.Stderr = nil
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("cloud-init's NoCloud datasource could not read the seed: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("run %s: %v", py, err)
	}
	var got struct {
		Metadata map[string]any `json:"metadata"`
		Userdata string         `json:"userdata"`
		Network  map[string]any `json:"network"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("NoCloud reader output %q: %v", out, err)
	}
	var md map[string]any
	if err := yaml.Unmarshal([]byte(s.MetaData), &md); err != nil {
		t.Fatal(err)
	}
	if got.Metadata["instance-id"] != md["instance-id"] || got.Metadata["local-hostname"] != md["local-hostname"] {
		t.Errorf("NoCloud meta-data = %v, want %v", got.Metadata, md)
	}
	if got.Userdata != s.UserData {
		t.Errorf("NoCloud user-data = %q, want %q", got.Userdata, s.UserData)
	}
	if (s.NetworkConfig != "") != (got.Network != nil) || (got.Network != nil && got.Network["version"] != float64(2)) {
		t.Errorf("NoCloud network-config = %v, want version 2 from %q", got.Network, s.NetworkConfig)
	}
}
