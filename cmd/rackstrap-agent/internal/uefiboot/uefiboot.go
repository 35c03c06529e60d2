// Package uefiboot writes the UEFI boot entry for an imaged disk: a
// Boot#### variable holding an EFI_LOAD_OPTION whose device path is the
// short form HD(partition, GPT, unique GUID, start, size)/File(loader)
// (UEFI 2.10 §3.1.3, §10.3.5.1, §10.3.5.4), first in BootOrder. Firmware
// expands the short form to whichever controller holds the partition, so
// the entry survives a disk moving to another port.
//
// Writing is idempotent: an identical entry is reused, an earlier
// Rackstrap entry (its description starts with DescriptionPrefix) is
// overwritten in place, and stale Rackstrap entries are removed, so
// imaging a node again never piles up entries. BootOrder is written only
// when it changes.
//
// The variables are read and written through u-root's efivarfs
// (/sys/firmware/efi/efivars), which also clears the immutable flag
// efivarfs puts on some variables.
package uefiboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/google/uuid"
	"github.com/u-root/u-root/pkg/efivarfs"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/gpt"
)

// GlobalGUID is EFI_GLOBAL_VARIABLE's GUID, the vendor of Boot#### and
// BootOrder.
var GlobalGUID = uuid.MustParse("8be4df61-93ca-11d2-aa0d-00e098032b8c")

// DescriptionPrefix starts the description of every entry Rackstrap
// writes; entries with it are Rackstrap's to replace.
const DescriptionPrefix = "Rackstrap"

// DefaultLoader is the removable-media path every UEFI OS image carries.
const DefaultLoader = `\EFI\BOOT\BOOTX64.EFI`

const (
	loadOptionActive = 0x1
	attrs            = efivarfs.AttributeNonVolatile | efivarfs.AttributeBootserviceAccess | efivarfs.AttributeRuntimeAccess
)

// Entry is the boot entry for an ESP partition and a loader on it.
type Entry struct {
	// Description is shown in the firmware's boot menu; it must start
	// with DescriptionPrefix.
	Description string
	// Partition is the ESP's number (1-based) and where it lies, in
	// logical sectors.
	Partition         uint32
	FirstLBA, Sectors uint64
	// PartGUID is the ESP's unique GUID.
	PartGUID uuid.UUID
	// Loader is the loader's path on the ESP, with backslashes.
	Loader string
}

// FromTable describes the entry for a disk's ESP.
func FromTable(t *gpt.Table, description, loader string) (Entry, error) {
	esp, ok := t.Find(gpt.TypeESP)
	if !ok {
		return Entry{}, errors.New("uefi boot entry: the image has no EFI system partition: it cannot boot in UEFI mode; build it with an ESP (outputs.disk.esp_size)")
	}
	if loader == "" {
		loader = DefaultLoader
	}
	return Entry{Description: description, Partition: uint32(esp.Index + 1), FirstLBA: esp.FirstLBA, Sectors: esp.LastLBA - esp.FirstLBA + 1, PartGUID: esp.GUID, Loader: loader}, nil
}

func (e Entry) check() error {
	if !strings.HasPrefix(e.Description, DescriptionPrefix) {
		return fmt.Errorf("uefi boot entry: description %q does not start with %q", e.Description, DescriptionPrefix)
	}
	if !strings.HasPrefix(e.Loader, `\`) || strings.Contains(e.Loader, "/") {
		return fmt.Errorf("uefi boot entry: loader %q is not a \\-separated path from the ESP's root", e.Loader)
	}
	if e.Partition == 0 || e.Sectors == 0 || e.PartGUID == uuid.Nil {
		return errors.New("uefi boot entry: no ESP partition number, size or GUID")
	}
	return nil
}

// DevicePath is the entry's device path: HD()/File()/End.
func (e Entry) DevicePath() []byte {
	var b bytes.Buffer
	// HARDDRIVE_DEVICE_PATH: type 4 (media), subtype 1, length 42
	b.Write([]byte{4, 1, 42, 0})
	binary.Write(&b, binary.LittleEndian, e.Partition)
	binary.Write(&b, binary.LittleEndian, e.FirstLBA)
	binary.Write(&b, binary.LittleEndian, e.Sectors)
	sig := gpt.GUIDBytes(e.PartGUID)
	b.Write(sig[:])
	b.Write([]byte{0x02, 0x02}) // MBRType: GPT; SignatureType: GUID
	// FILEPATH_DEVICE_PATH: type 4, subtype 4, a NUL-terminated UCS-2 path
	name := ucs2(e.Loader)
	binary.Write(&b, binary.LittleEndian, [2]uint8{4, 4})
	binary.Write(&b, binary.LittleEndian, uint16(4+len(name)))
	b.Write(name)
	// End of entire device path
	b.Write([]byte{0x7f, 0xff, 4, 0})
	return b.Bytes()
}

// LoadOption is the EFI_LOAD_OPTION for the entry.
func (e Entry) LoadOption() []byte {
	dp := e.DevicePath()
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint32(loadOptionActive))
	binary.Write(&b, binary.LittleEndian, uint16(len(dp)))
	b.Write(ucs2(e.Description))
	b.Write(dp)
	return b.Bytes()
}

func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u)+2)
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// LoadOption is a decoded EFI_LOAD_OPTION.
type LoadOption struct {
	Attributes  uint32
	Description string
	FilePath    []byte
	Optional    []byte
}

// ParseLoadOption decodes an EFI_LOAD_OPTION.
func ParseLoadOption(b []byte) (LoadOption, error) {
	var o LoadOption
	if len(b) < 6 {
		return o, fmt.Errorf("load option of %d bytes is shorter than its header", len(b))
	}
	o.Attributes = binary.LittleEndian.Uint32(b)
	fpl := int(binary.LittleEndian.Uint16(b[4:]))
	rest := b[6:]
	var u []uint16
	for {
		if len(rest) < 2 {
			return o, errors.New("load option description is not NUL-terminated")
		}
		c := binary.LittleEndian.Uint16(rest)
		rest = rest[2:]
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	o.Description = string(utf16.Decode(u))
	if fpl > len(rest) {
		return o, fmt.Errorf("load option file path list of %d bytes overruns the %d left", fpl, len(rest))
	}
	o.FilePath, o.Optional = rest[:fpl], rest[fpl:]
	return o, nil
}

// Vars is the variable store (efivarfs.EFIVar: u-root's efivarfs, or a
// test's directory).
type Vars = efivarfs.EFIVar

// Open opens the running system's efivarfs; an error means the system did
// not boot in UEFI mode (or efivarfs is not mounted).
func Open(dir string) (Vars, error) {
	if dir == "" {
		dir = efivarfs.DefaultVarFS
	}
	v, err := efivarfs.NewPath(dir)
	if err != nil {
		return nil, fmt.Errorf("uefi variables at %s: %w", dir, err)
	}
	return v, nil
}

var bootName = regexp.MustCompile(`^Boot([0-9A-F]{4})$`)

// Result says what Install did.
type Result struct {
	Num uint16
	// Created, Replaced, Reused: how the entry came to be.
	Created, Replaced, Reused bool
	// Removed lists stale Rackstrap entries deleted.
	Removed []uint16
	// OrderChanged says BootOrder was written.
	OrderChanged bool
}

func (r Result) String() string {
	s := fmt.Sprintf("Boot%04X", r.Num)
	switch {
	case r.Reused:
		s += " (already there)"
	case r.Replaced:
		s += " (replaced the earlier Rackstrap entry)"
	default:
		s += " (new)"
	}
	if r.OrderChanged {
		s += ", first in BootOrder"
	} else {
		s += ", already first in BootOrder"
	}
	if len(r.Removed) > 0 {
		s += fmt.Sprintf(", removed %d stale Rackstrap entries", len(r.Removed))
	}
	return s
}

// Install writes the entry and puts it first in BootOrder (see the
// package comment for how it stays idempotent).
func Install(v Vars, e Entry) (Result, error) {
	var res Result
	if err := e.check(); err != nil {
		return res, err
	}
	want := e.LoadOption()
	descs, err := v.List()
	if err != nil {
		return res, fmt.Errorf("uefi boot entry: list variables: %w", err)
	}
	var nums, ours []uint16
	same := -1
	for _, d := range descs {
		m := bootName.FindStringSubmatch(d.Name)
		if m == nil || d.GUID != GlobalGUID {
			continue
		}
		n64, _ := strconv.ParseUint(m[1], 16, 16)
		n := uint16(n64)
		nums = append(nums, n)
		_, data, err := v.Get(d)
		if err != nil {
			continue
		}
		if bytes.Equal(data, want) && same < 0 {
			same = int(n)
			continue
		}
		if o, err := ParseLoadOption(data); err == nil && strings.HasPrefix(o.Description, DescriptionPrefix) {
			ours = append(ours, n)
		}
	}
	slices.Sort(nums)
	slices.Sort(ours)
	switch {
	case same >= 0:
		res.Num, res.Reused = uint16(same), true
	case len(ours) > 0:
		res.Num, res.Replaced = ours[0], true
		ours = ours[1:]
	default:
		n, ok := freeNum(nums)
		if !ok {
			return res, errors.New("uefi boot entry: all 65536 Boot#### numbers are taken")
		}
		res.Num, res.Created = n, true
	}
	if !res.Reused {
		if err := v.Set(bootVar(res.Num), attrs, want); err != nil {
			return res, fmt.Errorf("uefi boot entry: write Boot%04X: %w", res.Num, err)
		}
	}
	// BootOrder: ours first, the stale ones of ours gone, the rest kept
	order, err := bootOrder(v)
	if err != nil {
		return res, err
	}
	newOrder := []uint16{res.Num}
	for _, n := range order {
		if n != res.Num && !slices.Contains(ours, n) {
			newOrder = append(newOrder, n)
		}
	}
	if !slices.Equal(order, newOrder) {
		b := make([]byte, 2*len(newOrder))
		for i, n := range newOrder {
			binary.LittleEndian.PutUint16(b[2*i:], n)
		}
		if err := v.Set(efivarfs.VariableDescriptor{Name: "BootOrder", GUID: GlobalGUID}, attrs, b); err != nil {
			return res, fmt.Errorf("uefi boot entry: write BootOrder: %w", err)
		}
		res.OrderChanged = true
	}
	for _, n := range ours {
		if err := v.Remove(bootVar(n)); err != nil && !errors.Is(err, efivarfs.ErrVarNotExist) {
			return res, fmt.Errorf("uefi boot entry: remove the stale Boot%04X: %w", n, err)
		}
		res.Removed = append(res.Removed, n)
	}
	return res, nil
}

func bootVar(n uint16) efivarfs.VariableDescriptor {
	return efivarfs.VariableDescriptor{Name: fmt.Sprintf("Boot%04X", n), GUID: GlobalGUID}
}

func freeNum(taken []uint16) (uint16, bool) {
	for n := 0; n <= 0xFFFF; n++ {
		if _, found := slices.BinarySearch(taken, uint16(n)); !found {
			return uint16(n), true
		}
	}
	return 0, false
}

// bootOrder reads BootOrder (none: empty).
func bootOrder(v Vars) ([]uint16, error) {
	_, b, err := v.Get(efivarfs.VariableDescriptor{Name: "BootOrder", GUID: GlobalGUID})
	if errors.Is(err, efivarfs.ErrVarNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("uefi boot entry: read BootOrder: %w", err)
	}
	if len(b)%2 != 0 {
		return nil, fmt.Errorf("uefi boot entry: BootOrder has %d bytes, not a list of 16-bit numbers", len(b))
	}
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return out, nil
}

// Booted says which entry the firmware booted (BootCurrent) and whether
// it is Rackstrap's, for the first-boot check-in.
type Booted struct {
	Num         uint16
	Description string
	Ours        bool
	First       bool // first in BootOrder
}

func (b Booted) String() string {
	s := fmt.Sprintf("booted through Boot%04X %q", b.Num, b.Description)
	if b.Ours {
		s += ", the entry the imaging wrote"
	} else {
		s += ", not the entry the imaging wrote"
	}
	if b.First {
		s += " (first in BootOrder)"
	}
	return s
}

// Current reads BootCurrent and its entry.
func Current(v Vars) (Booted, error) {
	_, b, err := v.Get(efivarfs.VariableDescriptor{Name: "BootCurrent", GUID: GlobalGUID})
	if err != nil {
		return Booted{}, fmt.Errorf("read BootCurrent: %w", err)
	}
	if len(b) != 2 {
		return Booted{}, fmt.Errorf("BootCurrent has %d bytes, want 2", len(b))
	}
	r := Booted{Num: binary.LittleEndian.Uint16(b)}
	_, data, err := v.Get(bootVar(r.Num))
	if err != nil {
		return r, fmt.Errorf("read Boot%04X: %w", r.Num, err)
	}
	o, err := ParseLoadOption(data)
	if err != nil {
		return r, fmt.Errorf("Boot%04X: %w", r.Num, err)
	}
	r.Description, r.Ours = o.Description, strings.HasPrefix(o.Description, DescriptionPrefix)
	if order, err := bootOrder(v); err == nil && len(order) > 0 {
		r.First = order[0] == r.Num
	}
	return r, nil
}
