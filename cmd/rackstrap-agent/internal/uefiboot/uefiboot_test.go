package uefiboot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/u-root/u-root/pkg/efivarfs"
)

// dirVars is an efivarfs-shaped directory: one file NAME-GUID per
// variable, the 4-byte attributes then the data.
type dirVars struct{ dir string }

func (d dirVars) path(v efivarfs.VariableDescriptor) string {
	return filepath.Join(d.dir, v.Name+"-"+v.GUID.String())
}

func (d dirVars) Get(v efivarfs.VariableDescriptor) (efivarfs.VariableAttributes, []byte, error) {
	b, err := os.ReadFile(d.path(v))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, efivarfs.ErrVarNotExist
	}
	if err != nil || len(b) < 4 {
		return 0, nil, fmt.Errorf("bad variable %s: %v", v.Name, err)
	}
	return efivarfs.VariableAttributes(binary.LittleEndian.Uint32(b)), b[4:], nil
}

func (d dirVars) Set(v efivarfs.VariableDescriptor, a efivarfs.VariableAttributes, data []byte) error {
	return os.WriteFile(d.path(v), append(binary.LittleEndian.AppendUint32(nil, uint32(a)), data...), 0o644)
}

func (d dirVars) Remove(v efivarfs.VariableDescriptor) error {
	if err := os.Remove(d.path(v)); errors.Is(err, os.ErrNotExist) {
		return efivarfs.ErrVarNotExist
	} else {
		return err
	}
}

func (d dirVars) List() ([]efivarfs.VariableDescriptor, error) {
	es, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	var out []efivarfs.VariableDescriptor
	for _, e := range es {
		n := e.Name()
		if len(n) < 38 {
			continue
		}
		g, err := uuid.Parse(n[len(n)-36:])
		if err != nil {
			continue
		}
		out = append(out, efivarfs.VariableDescriptor{Name: n[:len(n)-37], GUID: g})
	}
	return out, nil
}

var espGUID = uuid.MustParse("6b1b0f3e-1d7a-4f2e-9a55-0d4c7e3a1b21")

func entry(g uuid.UUID) Entry {
	return Entry{Description: "Rackstrap: e2e-os 1", Partition: 1, FirstLBA: 2048, Sectors: 81920, PartGUID: g, Loader: DefaultLoader}
}

// The load option, byte for byte as UEFI 2.10 §3.1.3 and §10.3.5 lay it
// out (what efibootmgr -c -d DISK -p 1 -l '\EFI\BOOT\BOOTX64.EFI'
// writes for the same partition).
func TestLoadOptionBytes(t *testing.T) {
	t.Parallel()
	e := entry(espGUID)
	le := func(n uint64, size int) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, n)
		return b[:size]
	}
	var want []byte
	want = append(want, le(1, 4)...)  // LOAD_OPTION_ACTIVE
	want = append(want, le(94, 2)...) // FilePathListLength: 42 + 48 + 4
	want = append(want, ucs2(e.Description)...)
	want = append(want, 4, 1, 42, 0) // HD(): media, hard drive, 42 bytes
	want = append(want, le(1, 4)...) // partition number
	want = append(want, le(2048, 8)...)
	want = append(want, le(81920, 8)...)
	// the GUID 6b1b0f3e-1d7a-4f2e-9a55-0d4c7e3a1b21, mixed-endian
	want = append(want, 0x3e, 0x0f, 0x1b, 0x6b, 0x7a, 0x1d, 0x2e, 0x4f, 0x9a, 0x55, 0x0d, 0x4c, 0x7e, 0x3a, 0x1b, 0x21)
	want = append(want, 2, 2)        // GPT, GUID signature
	want = append(want, 4, 4, 48, 0) // File(): media, file path, 4 + 21 UCS-2 characters and a NUL
	for _, c := range `\EFI\BOOT\BOOTX64.EFI` {
		want = append(want, byte(c), 0)
	}
	want = append(want, 0, 0)
	want = append(want, 0x7f, 0xff, 4, 0) // end of the device path
	if got := e.LoadOption(); string(got) != string(want) {
		t.Errorf("LoadOption =\n%x\nwant\n%x", got, want)
	}
	o, err := ParseLoadOption(want)
	if err != nil || o.Attributes != 1 || o.Description != e.Description || len(o.FilePath) != 94 || len(o.Optional) != 0 {
		t.Errorf("ParseLoadOption = %+v, %v", o, err)
	}
}

func order(t *testing.T, v dirVars) []uint16 {
	t.Helper()
	o, err := bootOrder(v)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestInstallIdempotent(t *testing.T) {
	t.Parallel()
	v := dirVars{t.TempDir()}
	// what OVMF leaves: a PXE entry and a shell, BootOrder 1, 2
	other := func(n uint16, desc string) {
		var b []byte
		b = binary.LittleEndian.AppendUint32(b, 1)
		b = binary.LittleEndian.AppendUint16(b, 4)
		b = append(b, ucs2(desc)...)
		b = append(b, 0x7f, 0xff, 4, 0)
		v.Set(bootVar(n), attrs, b)
	}
	other(1, "UEFI PXEv4 (MAC:525400123456)")
	other(2, "EFI Internal Shell")
	v.Set(efivarfs.VariableDescriptor{Name: "BootOrder", GUID: GlobalGUID}, attrs, []byte{1, 0, 2, 0})

	r, err := Install(v, entry(espGUID))
	if err != nil || !r.Created || r.Num != 0 || !r.OrderChanged {
		t.Fatalf("Install = %+v (%s), %v", r, r, err)
	}
	if got := order(t, v); !slices.Equal(got, []uint16{0, 1, 2}) {
		t.Errorf("BootOrder = %v, want [0 1 2]", got)
	}
	a, data, _ := v.Get(bootVar(0))
	if a != attrs || string(data) != string(entry(espGUID).LoadOption()) {
		t.Errorf("Boot0000 = %x %x", a, data)
	}

	// again: nothing changes
	r, err = Install(v, entry(espGUID))
	if err != nil || !r.Reused || r.OrderChanged || r.String() != "Boot0000 (already there), already first in BootOrder" {
		t.Fatalf("second Install = %+v (%s), %v", r, r, err)
	}

	// the firmware moved ours down (a one-time PXE boot): first again
	v.Set(efivarfs.VariableDescriptor{Name: "BootOrder", GUID: GlobalGUID}, attrs, []byte{1, 0, 0, 0, 2, 0})
	if r, err = Install(v, entry(espGUID)); err != nil || !r.Reused || !r.OrderChanged || !slices.Equal(order(t, v), []uint16{0, 1, 2}) {
		t.Fatalf("Install after reorder = %+v, %v; BootOrder %v", r, err, order(t, v))
	}

	// another image (another ESP GUID): the same number, replaced
	img2 := uuid.MustParse("0d9b1d54-3f7e-4d2a-8a4f-2c7a9e5b6f10")
	if r, err = Install(v, entry(img2)); err != nil || !r.Replaced || r.Num != 0 {
		t.Fatalf("Install of another image = %+v, %v", r, err)
	}

	// two stale Rackstrap entries (an older agent): one reused, the other
	// removed from the store and BootOrder
	stale := entry(espGUID)
	stale.Description = "Rackstrap: old"
	v.Set(bootVar(7), attrs, stale.LoadOption())
	v.Set(efivarfs.VariableDescriptor{Name: "BootOrder", GUID: GlobalGUID}, attrs, []byte{7, 0, 0, 0, 1, 0, 2, 0})
	img3 := uuid.MustParse("11111111-2222-4333-8444-555555555555")
	r, err = Install(v, entry(img3))
	if err != nil || !r.Replaced || r.Num != 0 || !slices.Equal(r.Removed, []uint16{7}) {
		t.Fatalf("Install over two Rackstrap entries = %+v, %v", r, err)
	}
	if got := order(t, v); !slices.Equal(got, []uint16{0, 1, 2}) {
		t.Errorf("BootOrder = %v, want [0 1 2]", got)
	}
	if _, _, err := v.Get(bootVar(7)); !errors.Is(err, efivarfs.ErrVarNotExist) {
		t.Errorf("Boot0007 still there: %v", err)
	}
	// untouched: the others
	for _, n := range []uint16{1, 2} {
		if _, _, err := v.Get(bootVar(n)); err != nil {
			t.Errorf("Boot%04X: %v", n, err)
		}
	}

	// BootCurrent as the firmware would set it after booting ours
	v.Set(efivarfs.VariableDescriptor{Name: "BootCurrent", GUID: GlobalGUID}, 6, []byte{0, 0})
	b, err := Current(v)
	if err != nil || !b.Ours || !b.First || b.String() != `booted through Boot0000 "Rackstrap: e2e-os 1", the entry the imaging wrote (first in BootOrder)` {
		t.Errorf("Current = %+v (%s), %v", b, b, err)
	}
}

func TestInstallRejects(t *testing.T) {
	t.Parallel()
	v := dirVars{t.TempDir()}
	for name, e := range map[string]Entry{
		"not ours":     {Description: "Debian", Partition: 1, Sectors: 1, PartGUID: espGUID, Loader: DefaultLoader},
		"slashes":      {Description: "Rackstrap", Partition: 1, Sectors: 1, PartGUID: espGUID, Loader: "/EFI/BOOT/BOOTX64.EFI"},
		"no partition": {Description: "Rackstrap", Sectors: 1, PartGUID: espGUID, Loader: DefaultLoader},
	} {
		if _, err := Install(v, e); err == nil {
			t.Errorf("%s: Install succeeded", name)
		}
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Error("Open(a plain directory) succeeded: it is not efivarfs")
	}
}

func FuzzParseLoadOption(f *testing.F) {
	f.Add(entry(espGUID).LoadOption())
	f.Add([]byte{1, 0, 0, 0, 4, 0, 0, 0, 0x7f, 0xff, 4, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseLoadOption(b)
		if err == nil && 6+len(o.FilePath)+len(o.Optional) > len(b) {
			t.Errorf("ParseLoadOption(%x) = %+v: more bytes than given", b, o)
		}
	})
}
