package seed

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

const userData = "#cloud-config\nhostname: n1\n"

var good = Seed{UserData: userData, MetaData: MetaData("rackstrap-n1", "n1")}

// makeDisk creates an image file with the partition table t; label, when
// set, formats partition 1 as FAT32 with that label.
func makeDisk(t *testing.T, size int64, table partition.Table, label string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	d, err := diskfs.Create(p, size, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if table != nil {
		if err := d.Partition(table); err != nil {
			t.Fatal(err)
		}
	}
	if label != "" {
		if _, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: label}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func gptTable(name string, sectors uint64) *gpt.Table {
	return &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		Partitions: []*gpt.Partition{{Index: 1, Start: 2048, End: 2048 + sectors - 1, Type: gpt.MicrosoftBasicData, Name: name}}}
}

func TestWriteReadGPTByName(t *testing.T) {
	t.Parallel()
	p := makeDisk(t, 40<<20, gptTable("CIDATA", 36<<11), "")
	s := good
	s.NetworkConfig = "network:\n  version: 1\n  config: []\n"
	part, err := Write(p, s)
	if err != nil {
		t.Fatalf("Write() = %v", err)
	}
	if part.Index != 1 || part.Start != 2048*512 || part.Size != 36<<20 {
		t.Errorf("Write() partition = %+v", part)
	}
	got, err := Read(p)
	if err != nil || got != s {
		t.Fatalf("Read() = %+v, %v; want %+v", got, err, s)
	}
	if err := Verify(p, s); err != nil {
		t.Errorf("Verify() = %v", err)
	}
	other := s
	other.UserData += "# changed\n"
	if err := Verify(p, other); err == nil || !strings.Contains(err.Error(), "user-data reads back") {
		t.Errorf("Verify(other) = %v, want a user-data mismatch", err)
	}
}

// A partition found by its FAT label (made by mkfs.vfat -n cidata, say),
// on an MBR disk, is used too.
func TestWriteMBRByLabel(t *testing.T) {
	t.Parallel()
	table := &mbr.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512,
		Partitions: []*mbr.Partition{{Index: 1, Bootable: false, Type: mbr.Fat32LBA, Start: 2048, Size: 36 << 11}}}
	p := makeDisk(t, 40<<20, table, "cidata")
	if _, err := Find(p); err != nil {
		t.Fatalf("Find() = %v", err)
	}
	if _, err := Write(p, good); err != nil {
		t.Fatalf("Write() = %v", err)
	}
	if got, err := Read(p); err != nil || got != good {
		t.Errorf("Read() = %+v, %v", got, err)
	}
}

func TestNoSeedPartition(t *testing.T) {
	t.Parallel()
	for name, p := range map[string]string{
		"no table":        makeDisk(t, 4<<20, nil, ""),
		"other partition": makeDisk(t, 40<<20, gptTable("data", 36<<11), "DATA"),
	} {
		t.Run(name, func(t *testing.T) {
			before, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Write(p, good)
			if !errors.Is(err, ErrNoSeedPartition) || !strings.Contains(err.Error(), "cidata_size") {
				t.Errorf("Write() = %v, want ErrNoSeedPartition with a remedy", err)
			}
			if after, _ := os.ReadFile(p); string(after) != string(before) {
				t.Error("a refused write changed the disk")
			}
		})
	}
	if _, err := Write(filepath.Join(t.TempDir(), "missing"), good); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Write(missing file) = %v, want not-exist", err)
	}
}

func TestSmallPartitionRefused(t *testing.T) {
	t.Parallel()
	p := makeDisk(t, 12<<20, gptTable("CIDATA", 8<<11), "")
	if _, err := Write(p, good); err == nil || !strings.Contains(err.Error(), "smaller than the 33 MiB") {
		t.Errorf("Write(8 MiB partition) = %v, want a size error", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		s    Seed
		want string
	}{
		"empty user-data":    {Seed{MetaData: good.MetaData}, "user-data is empty"},
		"unknown header":     {Seed{UserData: "hostname: x\n", MetaData: good.MetaData}, "does not start with #cloud-config"},
		"no instance-id":     {Seed{UserData: userData, MetaData: "local-hostname: x\n"}, "no instance-id"},
		"meta-data not YAML": {Seed{UserData: userData, MetaData: "instance-id: [\n"}, "meta-data is not YAML"},
		"bad network":        {Seed{UserData: userData, MetaData: good.MetaData, NetworkConfig: "version: 3\n"}, "version: 1"},
		"huge user-data":     {Seed{UserData: "#cloud-config\n" + strings.Repeat("#", MaxFileSize), MetaData: good.MetaData}, "more than the"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	for _, s := range []Seed{good, {UserData: "#!/bin/sh\necho hi\n", MetaData: "instance-id: i-1\n", NetworkConfig: "version: 2\nethernets: {}\n"}} {
		if err := s.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", s, err)
		}
	}
}

func TestFATLabel(t *testing.T) {
	t.Parallel()
	p := makeDisk(t, 40<<20, gptTable("x", 36<<11), "CIDATA")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, 2048*512); err != nil {
		t.Fatal(err)
	}
	if l, ok := FATLabel(bs); !ok || l != "CIDATA" {
		t.Errorf("FATLabel(FAT32 boot sector) = %q, %v", l, ok)
	}
	if _, ok := FATLabel(make([]byte, 512)); ok {
		t.Error("FATLabel(zeros) = ok")
	}
}

func FuzzFATLabel(f *testing.F) {
	bs := make([]byte, 512)
	bs[510], bs[511] = 0x55, 0xAA
	bs[11], bs[12], bs[13], bs[16] = 0, 2, 1, 2
	bs[0x42] = 0x29
	copy(bs[0x47:], "CIDATA     FAT32   ")
	f.Add(bs)
	f.Add(make([]byte, 512))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, ok := FATLabel(b)
		if ok && len(l) > 11 {
			t.Fatalf("label %q longer than 11 bytes", l)
		}
	})
}

func FuzzValidate(f *testing.F) {
	f.Add(good.UserData, good.MetaData, "")
	f.Add("#!/bin/sh\n", "instance-id: x\n", "network:\n  version: 2\n")
	f.Add("", "", "version: [")
	f.Fuzz(func(t *testing.T, ud, md, nc string) {
		s := Seed{UserData: ud, MetaData: md, NetworkConfig: nc}
		if err := s.Validate(); err == nil && (strings.TrimSpace(ud) == "" || md == "") {
			t.Fatalf("Validate accepted %+v", s)
		}
	})
}

func TestFromTaskAndApply(t *testing.T) {
	t.Parallel()
	none, err := FromTask([]byte(`{"url":"http://x/i.raw","sha256":"00","size":1}`))
	if none != nil || err != nil {
		t.Errorf("FromTask(no seed) = %v, %v; want nil, nil", none, err)
	}
	if s, err := FromTask([]byte(`{"seed":null}`)); s != nil || err != nil {
		t.Errorf("FromTask(seed null) = %v, %v", s, err)
	}
	for name, payload := range map[string]string{
		"not json":      `[`,
		"unknown field": `{"seed":{"userData":"#cloud-config\n","metaData":"instance-id: a\n","vendorData":"x"}}`,
		"invalid seed":  `{"seed":{"userData":"","metaData":"instance-id: a\n"}}`,
	} {
		if s, err := FromTask([]byte(payload)); s != nil || err == nil {
			t.Errorf("FromTask(%s) = %v, %v; want an error", name, s, err)
		}
	}
	s, err := FromTask([]byte(`{"url":"http://x/i.raw","seed":{"userData":"#cloud-config\nhostname: n1\n","metaData":"instance-id: rackstrap-n1\nlocal-hostname: n1\n"}}`))
	if err != nil || s == nil || *s != good {
		t.Fatalf("FromTask() = %+v, %v; want %+v", s, err, good)
	}
	p := makeDisk(t, 40<<20, gptTable("CIDATA", 36<<11), "")
	msg, err := Apply(p, *s)
	if err != nil || !strings.Contains(msg, "partition 1 (CIDATA)") {
		t.Errorf("Apply() = %q, %v", msg, err)
	}
}

func FuzzFromTask(f *testing.F) {
	f.Add([]byte(`{"seed":{"userData":"#cloud-config\n","metaData":"instance-id: a\n"}}`))
	f.Add([]byte(`{"url":"x"}`))
	f.Add([]byte(`{"seed":{"userData":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := FromTask(b)
		if err == nil && s != nil {
			if verr := s.Validate(); verr != nil {
				t.Fatalf("FromTask returned an invalid seed: %v", verr)
			}
		}
	})
}

// The image is written onto a disk larger than itself: the GPT's backup
// header is then not at the disk's end, and the seed still goes in.
func TestImageOnLargerDisk(t *testing.T) {
	t.Parallel()
	p := makeDisk(t, 40<<20, gptTable("CIDATA", 36<<11), "")
	if err := os.Truncate(p, 200<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(p, good); err != nil {
		t.Fatalf("Apply() on a larger disk = %v", err)
	}
}
