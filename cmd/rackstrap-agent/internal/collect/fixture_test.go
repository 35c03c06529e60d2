package collect

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// tree writes a fake host root (sysfs, procfs) for the collectors.
type tree struct {
	t    *testing.T
	root string
}

func newTree(t *testing.T) *tree { return &tree{t: t, root: t.TempDir()} }

// file writes content at an absolute host path below the root.
func (tr *tree) file(p, content string) {
	tr.t.Helper()
	full := filepath.Join(tr.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		tr.t.Fatal(err)
	}
}

// files writes several attributes of one directory.
func (tr *tree) files(dir string, attrs map[string]string) {
	tr.t.Helper()
	for k, v := range attrs {
		tr.file(dir+"/"+k, v+"\n")
	}
}

// link makes a relative symlink at p pointing to target, as sysfs does.
func (tr *tree) link(p, target string) {
	tr.t.Helper()
	full := filepath.Join(tr.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		tr.t.Fatal(err)
	}
}

// dir makes an empty directory.
func (tr *tree) dir(p string) {
	tr.t.Helper()
	if err := os.MkdirAll(filepath.Join(tr.root, p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
}

// smbiosStruct encodes one SMBIOS structure: formatted is the part after the
// 4-byte header (offset 0x04 on), strs the string set (indexes from 1).
func smbiosStruct(typ byte, handle uint16, formatted []byte, strs ...string) []byte {
	b := []byte{typ, byte(4 + len(formatted)), 0, 0}
	binary.LittleEndian.PutUint16(b[2:], handle)
	b = append(b, formatted...)
	for _, s := range strs {
		b = append(b, s...)
		b = append(b, 0)
	}
	if len(strs) == 0 {
		b = append(b, 0)
	}
	return append(b, 0)
}

// fields is a formatted area addressed by SMBIOS offsets (0x04 = index 0).
type fields []byte

func newFields(length int) fields { return make(fields, length-4) }
func (f fields) u8(off int, v byte) fields {
	f[off-4] = v
	return f
}
func (f fields) u16(off int, v uint16) fields {
	binary.LittleEndian.PutUint16(f[off-4:], v)
	return f
}
func (f fields) u32(off int, v uint32) fields {
	binary.LittleEndian.PutUint32(f[off-4:], v)
	return f
}

// type17 is a memory device. size is in MiB (0: empty slot; ≥ 32 GiB goes
// into the extended size field as firmware does).
func type17(handle uint16, locator string, sizeMiB uint32, speed uint16, serial string) []byte {
	f := newFields(0x28).u16(0x04, 0x1000).u16(0x06, 0xfffe).u16(0x08, 72).u16(0x0a, 64).
		u8(0x0e, 0x09 /* DIMM */).u8(0x10, 1).u8(0x11, 2).u8(0x12, 0x22 /* DDR5 */)
	if sizeMiB == 0 {
		f.u8(0x12, 0x02) // unknown type, as firmware reports empty slots
		return smbiosStruct(17, handle, f, locator, "BANK "+locator)
	}
	if sizeMiB >= 32*1024 {
		f.u16(0x0c, 0x7fff).u32(0x1c, sizeMiB)
	} else {
		f.u16(0x0c, uint16(sizeMiB))
	}
	f.u16(0x15, 5600).u8(0x17, 3).u8(0x18, 4).u8(0x1a, 5).u16(0x20, speed)
	return smbiosStruct(17, handle, f, locator, "BANK "+locator, "Samsung", serial, "M321R8GA0BB0-CQKZJ")
}

// type4 is a populated CPU socket.
func type4(handle uint16, socket string, maxMHz uint16, cores, threads byte) []byte {
	f := newFields(0x30).u8(0x04, 1).u8(0x05, 3 /* central */).u8(0x06, 0xb3).u8(0x07, 2).
		u8(0x10, 3).u16(0x14, maxMHz).u16(0x16, 2000).u8(0x18, 0x41 /* populated, enabled */).
		u16(0x1a, 0xffff).u16(0x1c, 0xffff).u16(0x1e, 0xffff).
		u8(0x23, cores).u8(0x24, cores).u8(0x25, threads).
		u16(0x2a, uint16(cores)).u16(0x2c, uint16(cores)).u16(0x2e, uint16(threads))
	return smbiosStruct(4, handle, f, socket, "Intel(R) Corporation", "Intel(R) Xeon(R) Platinum 8480C")
}

// type4Empty is an unpopulated socket.
func type4Empty(handle uint16, socket string) []byte {
	f := newFields(0x30).u8(0x04, 1).u8(0x05, 3).u8(0x18, 0x00)
	return smbiosStruct(4, handle, f, socket)
}

// type1 is the system information structure.
func type1(vendor, product, serial string, uuid [16]byte) []byte {
	f := newFields(0x1b).u8(0x04, 1).u8(0x05, 2).u8(0x06, 3).u8(0x07, 4).u8(0x19, 5).u8(0x1a, 6)
	copy(f[0x08-4:], uuid[:])
	f.u8(0x18, 6)
	return smbiosStruct(1, 0x0100, f, vendor, product, "1.0", serial, "SKU-1", "DGX")
}

func endOfTable() []byte { return smbiosStruct(127, 0xfeff, nil) }

func concat(parts ...[]byte) string {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return string(b)
}
