// Package seed writes a node's cloud-init NoCloud seed (user-data,
// meta-data and optionally network-config) into the CIDATA partition of a
// disk: a block device or an image file. cloud-init's NoCloud datasource
// finds the seed by the filesystem label "cidata" (any case), so an image
// built with outputs.disk.cidata_size (images/build) boots from disk and
// runs the node's own user data, e.g. its kubeadm join.
//
// Write reformats the partition (FAT32, label CIDATA) and writes the files
// anew each time, so writing the same seed twice leaves the same bytes: a
// task run again after a crash changes nothing more. Every timestamp in
// the filesystem is fixed (1980-01-01, FAT's epoch) and the free-cluster
// count is set so that fsck.vfat finds nothing to fix.
package seed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
	"go.yaml.in/yaml/v3"
)

// Label is the FAT volume label of the seed filesystem (NoCloud looks for
// "cidata" or "CIDATA"); PartitionName is the GPT partition name
// images/build gives its partition.
const (
	Label         = "CIDATA"
	PartitionName = "CIDATA"
)

// MinPartitionSize is the smallest partition Write formats: FAT32 needs
// 65525 clusters of 512 bytes (plus its tables).
const MinPartitionSize = 33 << 20

// MaxFileSize bounds each seed file: cloud-init's user data is small;
// anything near this is a mistake (an image or archive pasted inline).
const MaxFileSize = 4 << 20

// Seed is one node's NoCloud seed, as carried in an image task.
type Seed struct {
	// UserData is the cloud-init user data (#cloud-config, a script, or
	// a MIME multi-part document).
	UserData string `json:"userData"`
	// MetaData is NoCloud's meta-data: YAML with at least instance-id.
	MetaData string `json:"metaData"`
	// NetworkConfig is cloud-init network configuration (version 1 or 2);
	// empty leaves networking to the image (DHCP by default).
	NetworkConfig string `json:"networkConfig,omitempty"`
}

// ErrNoSeedPartition is returned when the disk has no CIDATA partition.
var ErrNoSeedPartition = errors.New("no CIDATA partition")

// MetaData renders NoCloud meta-data: the instance ID (cloud-init runs its
// once-per-instance modules again when it changes) and the host name.
func MetaData(instanceID, hostname string) string {
	b, _ := yaml.Marshal(struct {
		InstanceID    string `yaml:"instance-id"`
		LocalHostname string `yaml:"local-hostname,omitempty"`
	}{instanceID, hostname})
	return string(b)
}

// userDataHeads are the first lines cloud-init recognises as user data
// (cloudinit/handlers): cloud-config, scripts, includes, boothooks,
// jinja templates, multi-part MIME and gzip.
var userDataHeads = []string{"#cloud-config", "#!", "#include", "#cloud-boothook", "#part-handler", "#cloud-config-archive", "## template: jinja", "Content-Type:", "MIME-Version:", "\x1f\x8b"}

// Validate checks the seed before the disk is touched; each error says
// what to fix.
func (s Seed) Validate() error {
	var errs []error
	switch {
	case strings.TrimSpace(s.UserData) == "":
		errs = append(errs, errors.New("seed: user-data is empty: render the node's cloud-init first"))
	case !slices.ContainsFunc(userDataHeads, func(h string) bool { return strings.HasPrefix(s.UserData, h) }):
		errs = append(errs, errors.New("seed: user-data does not start with #cloud-config, #! or another header cloud-init recognises, so cloud-init would ignore it"))
	}
	for name, v := range map[string]string{"user-data": s.UserData, "meta-data": s.MetaData, "network-config": s.NetworkConfig} {
		if len(v) > MaxFileSize {
			errs = append(errs, fmt.Errorf("seed: %s is %d bytes, more than the %d a seed file may hold", name, len(v), MaxFileSize))
		}
	}
	if err := checkMetaData(s.MetaData); err != nil {
		errs = append(errs, err)
	}
	if s.NetworkConfig != "" {
		if err := checkNetworkConfig(s.NetworkConfig); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkMetaData parses NoCloud meta-data: a YAML mapping whose instance-id
// is a non-empty string.
func checkMetaData(md string) error {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(md), &m); err != nil {
		return fmt.Errorf("seed: meta-data is not YAML: %v", err)
	}
	id, ok := m["instance-id"].(string)
	if !ok || strings.TrimSpace(id) == "" {
		return errors.New("seed: meta-data has no instance-id: write 'instance-id: NAME' (seed.MetaData renders it)")
	}
	return nil
}

// checkNetworkConfig parses cloud-init network configuration: a YAML
// mapping with version 1 or 2, at the top or under "network".
func checkNetworkConfig(nc string) error {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(nc), &m); err != nil {
		return fmt.Errorf("seed: network-config is not YAML: %v", err)
	}
	if n, ok := m["network"].(map[string]any); ok {
		m = n
	}
	if v, ok := m["version"].(int); !ok || (v != 1 && v != 2) {
		return errors.New("seed: network-config needs 'version: 1' or 'version: 2' (cloud-init networking config)")
	}
	return nil
}

// files lists the seed's files in the order they are written.
func (s Seed) files() []struct{ name, data string } {
	fs := []struct{ name, data string }{{"meta-data", s.MetaData}, {"user-data", s.UserData}}
	if s.NetworkConfig != "" {
		fs = append(fs, struct{ name, data string }{"network-config", s.NetworkConfig})
	}
	return fs
}

// Partition is where a disk's seed filesystem lives.
type Partition struct {
	// Index is the partition's number (sdX3 is 3).
	Index int
	// Start and Size are in bytes from the start of the disk.
	Start, Size int64
}

// Find returns the seed partition of the disk at path: the GPT partition
// named CIDATA, else the one (GPT or MBR) whose FAT boot sector says
// CIDATA. The error wraps ErrNoSeedPartition when there is none.
func Find(path string) (Partition, error) {
	d, err := open(path, diskfs.ReadOnly)
	if err != nil {
		return Partition{}, err
	}
	defer d.Close()
	return find(d, path)
}

func open(path string, mode diskfs.OpenModeOption) (*disk.Disk, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	d, err := diskfs.Open(path, diskfs.WithOpenMode(mode), diskfs.WithSectorSize(diskfs.SectorSize512))
	if err != nil {
		return nil, fmt.Errorf("seed: open %s: %w (a block device that is mounted or in use cannot be opened exclusively)", path, err)
	}
	return d, nil
}

func find(d *disk.Disk, path string) (Partition, error) {
	t, err := d.GetPartitionTable()
	if err != nil || t == nil {
		return Partition{}, fmt.Errorf("seed: %s has no partition table (%v): %w; write a Rackstrap image built with outputs.disk.cidata_size first", path, err, ErrNoSeedPartition)
	}
	var cands []Partition
	switch tt := t.(type) {
	case *gpt.Table:
		for _, p := range tt.Partitions {
			if p.Start == 0 || p.End < p.Start {
				continue
			}
			part := Partition{Index: p.Index, Start: p.GetStart(), Size: int64(p.End-p.Start+1) * 512}
			if strings.EqualFold(p.Name, PartitionName) {
				return part, nil
			}
			cands = append(cands, part)
		}
	case *mbr.Table:
		for i, p := range tt.Partitions {
			if p.Size == 0 || p.Type == mbr.Empty {
				continue
			}
			idx := p.Index
			if idx == 0 {
				idx = i + 1
			}
			cands = append(cands, Partition{Index: idx, Start: p.GetStart(), Size: p.GetSize()})
		}
	}
	for _, c := range cands {
		bs := make([]byte, 512)
		if _, err := d.Backend.ReadAt(bs, c.Start); err != nil {
			continue
		}
		if l, ok := FATLabel(bs); ok && strings.EqualFold(l, Label) {
			return c, nil
		}
	}
	return Partition{}, fmt.Errorf("seed: %s has %d partitions and none is named or labelled %s: %w; the image must be built with outputs.disk.cidata_size (a small FAT partition for cloud-init's NoCloud seed), or the node's target must not be Kubernetes",
		path, len(cands), Label, ErrNoSeedPartition)
}

// FATLabel reads the volume label from a FAT12/16/32 boot sector; ok is
// false when bs is not one.
func FATLabel(bs []byte) (label string, ok bool) {
	if len(bs) < 512 || bs[510] != 0x55 || bs[511] != 0xAA {
		return "", false
	}
	bps := int(bs[11]) | int(bs[12])<<8
	if bps < 512 || bps > 4096 || bps&(bps-1) != 0 || bs[13] == 0 || bs[16] == 0 {
		return "", false
	}
	// FAT32's extended BPB has its signature at 0x42, FAT12/16's at 0x26
	off := -1
	if (bs[0x42] == 0x29 || bs[0x42] == 0x28) && string(bs[0x52:0x57]) == "FAT32" {
		off = 0x47
	} else if bs[0x26] == 0x29 || bs[0x26] == 0x28 {
		off = 0x2B
	}
	if off < 0 {
		return "", false
	}
	return strings.TrimRight(string(bs[off:off+11]), " \x00"), true
}

// Write formats the disk's seed partition and writes s into it, then
// flushes the disk. The disk at path (a block device or an image file)
// must have a CIDATA partition (Find); nothing else on it is touched.
func Write(path string, s Seed) (Partition, error) {
	if err := s.Validate(); err != nil {
		return Partition{}, err
	}
	d, err := open(path, diskfs.ReadWriteExclusive)
	if err != nil {
		return Partition{}, err
	}
	p, err := find(d, path)
	if err != nil {
		d.Close()
		return p, err
	}
	if p.Size < MinPartitionSize {
		d.Close()
		return p, fmt.Errorf("seed: %s partition %d is %d MiB, smaller than the %d MiB a FAT32 seed filesystem needs: rebuild the image with a larger outputs.disk.cidata_size",
			path, p.Index, p.Size>>20, MinPartitionSize>>20)
	}
	if err := fill(d, p, s); err != nil {
		d.Close()
		return p, fmt.Errorf("seed: write %s partition %d: %w", path, p.Index, err)
	}
	if err := d.Close(); err != nil {
		return p, fmt.Errorf("seed: write %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return p, fmt.Errorf("seed: %w", err)
	}
	defer f.Close()
	if err := Fixup(f, p.Start); err != nil {
		return p, fmt.Errorf("seed: %s partition %d: %w", path, p.Index, err)
	}
	if err := f.Sync(); err != nil {
		return p, fmt.Errorf("seed: flush %s: %w", path, err)
	}
	return p, nil
}

func fill(d *disk.Disk, p Partition, s Seed) error {
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: p.Index, FSType: filesystem.TypeFat32, VolumeLabel: Label, Reproducible: true})
	if err != nil {
		return fmt.Errorf("format FAT32: %w", err)
	}
	for _, f := range s.files() {
		w, err := fs.OpenFile("/"+f.name, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
		if err != nil {
			return fmt.Errorf("create %s: %w", f.name, err)
		}
		if _, err := io.Copy(w, strings.NewReader(f.data)); err != nil {
			w.Close()
			return fmt.Errorf("write %s: %w", f.name, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

// Read reads the seed back from the disk's CIDATA partition. A file that is
// not there reads as empty.
func Read(path string) (Seed, error) {
	d, err := open(path, diskfs.ReadOnly)
	if err != nil {
		return Seed{}, err
	}
	defer d.Close()
	p, err := find(d, path)
	if err != nil {
		return Seed{}, err
	}
	fs, err := d.GetFilesystem(p.Index)
	if err != nil {
		return Seed{}, fmt.Errorf("seed: %s partition %d holds no FAT filesystem: %w", path, p.Index, err)
	}
	var s Seed
	for _, f := range []struct {
		name string
		dst  *string
	}{{"user-data", &s.UserData}, {"meta-data", &s.MetaData}, {"network-config", &s.NetworkConfig}} {
		r, err := fs.OpenFile("/"+f.name, os.O_RDONLY)
		if err != nil {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
		r.Close()
		if err != nil {
			return s, fmt.Errorf("seed: read %s from %s: %w", f.name, path, err)
		}
		*f.dst = string(b)
	}
	return s, nil
}

// Verify reads the seed back and compares it with s.
func Verify(path string, s Seed) error {
	got, err := Read(path)
	if err != nil {
		return err
	}
	for _, c := range []struct{ name, got, want string }{
		{"user-data", got.UserData, s.UserData}, {"meta-data", got.MetaData, s.MetaData}, {"network-config", got.NetworkConfig, s.NetworkConfig},
	} {
		if !bytes.Equal([]byte(c.got), []byte(c.want)) {
			return fmt.Errorf("seed: %s reads back from %s as %d bytes that differ from the %d written: check the disk", c.name, path, len(c.got), len(c.want))
		}
	}
	return nil
}

// TaskField is the key of the seed in an image task's JSON payload
// (the controller's edge.ImageTask.Seed).
const TaskField = "seed"

// FromTask reads the seed from an image task's JSON payload: nil, nil when
// the task carries none (the node's image needs no seed); an error when it
// carries one that is not valid, before the disk is touched.
func FromTask(payload []byte) (*Seed, error) {
	var t map[string]json.RawMessage
	if err := json.Unmarshal(payload, &t); err != nil {
		return nil, fmt.Errorf("seed: image task payload is not a JSON object: %v", err)
	}
	raw, ok := t[TaskField]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var s Seed
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("seed: the image task's seed is not valid: %v; the controller and agent versions may differ", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Apply writes s into the disk's CIDATA partition and reads it back: the
// agent's step after a verified image write. The message says where the
// seed went, for the task's report.
func Apply(path string, s Seed) (string, error) {
	p, err := Write(path, s)
	if err != nil {
		return "", err
	}
	if err := Verify(path, s); err != nil {
		return "", err
	}
	n := len(s.files())
	return fmt.Sprintf("cloud-init NoCloud seed (%d files, %d bytes of user-data) written to partition %d (CIDATA) of %s and read back", n, len(s.UserData), p.Index, path), nil
}
