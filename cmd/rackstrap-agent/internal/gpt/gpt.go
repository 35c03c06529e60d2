// Package gpt reads a disk's GUID partition table and moves it to the end
// of a disk larger than the image it came from: the backup header and
// entries go to the disk's last sectors, and the last partition grows to
// the disk's end (less a reserved tail). Nothing else in the table
// changes: entries keep their bytes (types, GUIDs, attributes, names), and
// both headers and their CRCs are recomputed (UEFI 2.10 §5.3).
//
// The new backup is written and synced before the primary, so a crash at
// any point leaves a disk that tools and firmware read as either the old
// table (primary intact, old backup intact inside the image's area) or the
// new one: a primary whose entries no longer match its CRC falls back to
// the new backup, which already describes the grown table.
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"

	"github.com/google/uuid"
)

// ErrNoGPT marks a disk whose sector 1 holds no valid GPT header.
var ErrNoGPT = errors.New("no GUID partition table")

// Well-known partition types.
var (
	TypeESP       = uuid.MustParse("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	TypeLinuxData = uuid.MustParse("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
)

const (
	signature  = "EFI PART"
	headerSize = 92
	// maxEntries bounds the entry array a header may claim (the usual
	// table has 128 entries of 128 bytes).
	maxEntryBytes = 1 << 20
)

// Header is a GPT header's fields.
type Header struct {
	Revision       uint32
	HeaderSize     uint32
	MyLBA          uint64
	AlternateLBA   uint64
	FirstUsableLBA uint64
	LastUsableLBA  uint64
	DiskGUID       uuid.UUID
	EntriesLBA     uint64
	NumEntries     uint32
	EntrySize      uint32
	EntriesCRC     uint32
}

// Partition is one used entry.
type Partition struct {
	// Index is the entry's index (the partition number is Index+1).
	Index    int
	Type     uuid.UUID
	GUID     uuid.UUID
	FirstLBA uint64
	LastLBA  uint64
	Attrs    uint64
	Name     string
}

// Table is a disk's primary GPT.
type Table struct {
	SectorSize int64
	Header     Header
	// raw is the header sector as read (bytes past HeaderSize are kept).
	raw []byte
	// entries is the entry array as read.
	entries    []byte
	Partitions []Partition
}

// Read reads and checks the primary GPT of a disk with the given logical
// sector size: signature, header CRC, entry array CRC, and the header's
// own LBA.
func Read(r io.ReaderAt, sectorSize int64) (*Table, error) {
	if sectorSize < 512 || sectorSize&(sectorSize-1) != 0 {
		return nil, fmt.Errorf("gpt: sector size %d is not a power of two of at least 512", sectorSize)
	}
	raw := make([]byte, sectorSize)
	if _, err := r.ReadAt(raw, sectorSize); err != nil {
		return nil, fmt.Errorf("gpt: read the header at sector 1: %w", err)
	}
	h, err := parseHeader(raw)
	if err != nil {
		return nil, err
	}
	if h.MyLBA != 1 {
		return nil, fmt.Errorf("%w: the header at sector 1 says it is at sector %d", ErrNoGPT, h.MyLBA)
	}
	n := int64(h.NumEntries) * int64(h.EntrySize)
	entries := make([]byte, n)
	if _, err := r.ReadAt(entries, int64(h.EntriesLBA)*sectorSize); err != nil {
		return nil, fmt.Errorf("gpt: read %d bytes of partition entries at sector %d: %w", n, h.EntriesLBA, err)
	}
	if got := crc32.ChecksumIEEE(entries); got != h.EntriesCRC {
		return nil, fmt.Errorf("%w: the partition entries' CRC32 is %08x, the header says %08x", ErrNoGPT, got, h.EntriesCRC)
	}
	t := &Table{SectorSize: sectorSize, Header: h, raw: raw, entries: entries}
	for i := range int(h.NumEntries) {
		e := entries[i*int(h.EntrySize):]
		typ := guidAt(e[0:16])
		if typ == uuid.Nil {
			continue
		}
		p := Partition{Index: i, Type: typ, GUID: guidAt(e[16:32]), FirstLBA: le64(e[32:]), LastLBA: le64(e[40:]), Attrs: le64(e[48:]), Name: utf16Name(e[56:128])}
		if p.FirstLBA > p.LastLBA || p.FirstLBA < h.FirstUsableLBA || p.LastLBA > h.LastUsableLBA {
			return nil, fmt.Errorf("gpt: partition %d spans sectors %d..%d, outside the usable %d..%d", i+1, p.FirstLBA, p.LastLBA, h.FirstUsableLBA, h.LastUsableLBA)
		}
		t.Partitions = append(t.Partitions, p)
	}
	return t, nil
}

func parseHeader(raw []byte) (Header, error) {
	var h Header
	if string(raw[:8]) != signature {
		return h, fmt.Errorf("%w: sector 1 does not start with %q", ErrNoGPT, signature)
	}
	h.Revision = le32(raw[8:])
	h.HeaderSize = le32(raw[12:])
	if h.HeaderSize < headerSize || int(h.HeaderSize) > len(raw) {
		return h, fmt.Errorf("%w: header size %d is outside %d..%d", ErrNoGPT, h.HeaderSize, headerSize, len(raw))
	}
	want := le32(raw[16:])
	c := bytes.Clone(raw[:h.HeaderSize])
	binary.LittleEndian.PutUint32(c[16:], 0)
	if got := crc32.ChecksumIEEE(c); got != want {
		return h, fmt.Errorf("%w: the header's CRC32 is %08x, it says %08x", ErrNoGPT, got, want)
	}
	h.MyLBA = le64(raw[24:])
	h.AlternateLBA = le64(raw[32:])
	h.FirstUsableLBA = le64(raw[40:])
	h.LastUsableLBA = le64(raw[48:])
	h.DiskGUID = guidAt(raw[56:72])
	h.EntriesLBA = le64(raw[72:])
	h.NumEntries = le32(raw[80:])
	h.EntrySize = le32(raw[84:])
	h.EntriesCRC = le32(raw[88:])
	if h.EntrySize < 128 || h.EntrySize%8 != 0 || int64(h.NumEntries)*int64(h.EntrySize) > maxEntryBytes || h.NumEntries == 0 {
		return h, fmt.Errorf("%w: %d entries of %d bytes is not a partition entry array this agent reads", ErrNoGPT, h.NumEntries, h.EntrySize)
	}
	if h.FirstUsableLBA > h.LastUsableLBA || h.EntriesLBA < 2 {
		return h, fmt.Errorf("%w: usable sectors %d..%d, entries at sector %d", ErrNoGPT, h.FirstUsableLBA, h.LastUsableLBA, h.EntriesLBA)
	}
	return h, nil
}

// Last returns the partition that ends last on the disk.
func (t *Table) Last() (Partition, bool) {
	var last Partition
	ok := false
	for _, p := range t.Partitions {
		if !ok || p.LastLBA > last.LastLBA {
			last, ok = p, true
		}
	}
	return last, ok
}

// Find returns the first partition of a type.
func (t *Table) Find(typ uuid.UUID) (Partition, bool) {
	for _, p := range t.Partitions {
		if p.Type == typ {
			return p, true
		}
	}
	return Partition{}, false
}

// Growth says what Grow did.
type Growth struct {
	// Partition is the grown partition's number (0: none grew).
	Partition int
	// OldLast and NewLast are its last sector before and after.
	OldLast, NewLast uint64
	// BackupMoved says the backup header moved to the disk's last sector.
	BackupMoved bool
}

// Changed says whether Grow wrote anything.
func (g Growth) Changed() bool { return g.BackupMoved || g.NewLast != g.OldLast }

func (g Growth) String() string {
	if !g.Changed() {
		return "the partition table already fills the disk"
	}
	s := "moved the backup GPT to the end of the disk"
	if g.NewLast != g.OldLast {
		s += fmt.Sprintf(" and grew partition %d from sector %d to %d", g.Partition, g.OldLast, g.NewLast)
	}
	return s
}

// AlignSectors is the 1 MiB boundary partition ends are kept to.
const alignBytes = 1 << 20

// Plan computes the table for a disk of diskBytes: the backup at its last
// sector, and the last partition ending before reserveTail bytes from the
// end (rounded down to a MiB boundary), never shrinking it. It changes t.
func (t *Table) Plan(diskBytes, reserveTail int64) (Growth, error) {
	ss := t.SectorSize
	sectors := uint64(diskBytes / ss)
	entrySectors := (uint64(t.Header.NumEntries)*uint64(t.Header.EntrySize) + uint64(ss) - 1) / uint64(ss)
	if t.Header.LastUsableLBA >= sectors || sectors-1-t.Header.LastUsableLBA < entrySectors+1 {
		return Growth{}, fmt.Errorf("gpt: the disk has %d sectors, less than the table's usable space (%d) and its backup need: the disk is smaller than the image", sectors, t.Header.LastUsableLBA)
	}
	lastUsable := sectors - 2 - entrySectors
	g := Growth{BackupMoved: t.Header.AlternateLBA != sectors-1}
	last, ok := t.Last()
	if ok {
		g.Partition, g.OldLast, g.NewLast = last.Index+1, last.LastLBA, last.LastLBA
		end := (diskBytes - reserveTail) &^ (alignBytes - 1) // first byte not to use
		if end > 0 {
			newLast := min(uint64(end/ss)-1, lastUsable)
			if newLast > last.LastLBA {
				g.NewLast = newLast
				binary.LittleEndian.PutUint64(t.entries[last.Index*int(t.Header.EntrySize)+40:], newLast)
				for i := range t.Partitions {
					if t.Partitions[i].Index == last.Index {
						t.Partitions[i].LastLBA = newLast
					}
				}
			}
		}
	}
	t.Header.AlternateLBA = sectors - 1
	t.Header.LastUsableLBA = max(lastUsable, t.Header.LastUsableLBA)
	t.Header.EntriesCRC = crc32.ChecksumIEEE(t.entries)
	return g, nil
}

// encodeHeader returns the header sector for a copy at myLBA.
func (t *Table) encodeHeader(myLBA, altLBA, entriesLBA uint64) []byte {
	b := bytes.Clone(t.raw)
	h := t.Header
	binary.LittleEndian.PutUint64(b[24:], myLBA)
	binary.LittleEndian.PutUint64(b[32:], altLBA)
	binary.LittleEndian.PutUint64(b[40:], h.FirstUsableLBA)
	binary.LittleEndian.PutUint64(b[48:], h.LastUsableLBA)
	binary.LittleEndian.PutUint64(b[72:], entriesLBA)
	binary.LittleEndian.PutUint32(b[88:], h.EntriesCRC)
	binary.LittleEndian.PutUint32(b[16:], 0)
	binary.LittleEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:h.HeaderSize]))
	return b
}

// Disk is what Grow writes to.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// Grow moves the table of a disk of diskBytes to its end and grows the
// last partition (see Plan), writing the backup first and the primary
// last, each synced. A table that already fills the disk is left alone.
func Grow(d Disk, sectorSize, diskBytes, reserveTail int64) (Growth, error) {
	t, err := Read(d, sectorSize)
	if err != nil {
		return Growth{}, err
	}
	g, err := t.Plan(diskBytes, reserveTail)
	if err != nil || !g.Changed() {
		return g, err
	}
	ss := uint64(sectorSize)
	alt := t.Header.AlternateLBA
	entrySectors := (uint64(len(t.entries)) + ss - 1) / ss
	backupEntries := alt - entrySectors
	pad := func(b []byte) []byte { return append(b, make([]byte, int(entrySectors*ss)-len(b))...) }
	steps := []struct {
		what string
		b    []byte
		lba  uint64
	}{
		{"backup partition entries", pad(bytes.Clone(t.entries)), backupEntries},
		{"backup header", t.encodeHeader(alt, 1, backupEntries), alt},
		{"sync", nil, 0},
		{"primary partition entries", t.entries, t.Header.EntriesLBA},
		{"primary header", t.encodeHeader(1, alt, t.Header.EntriesLBA), 1},
		{"protective MBR", nil, 0},
		{"sync", nil, 0},
	}
	for _, s := range steps {
		var err error
		switch s.what {
		case "sync":
			err = d.Sync()
		case "protective MBR":
			err = fixProtectiveMBR(d, alt)
		default:
			_, err = d.WriteAt(s.b, int64(s.lba*ss))
		}
		if err != nil {
			return g, fmt.Errorf("gpt: write the %s: %w", s.what, err)
		}
	}
	return g, nil
}

// fixProtectiveMBR makes a protective MBR's 0xEE entry cover the disk up to
// lastLBA (capped at 0xFFFFFFFF sectors), as sgdisk -e does. An MBR without
// a 0xEE entry (a hybrid, or none) is left alone.
func fixProtectiveMBR(d Disk, lastLBA uint64) error {
	mbr := make([]byte, 512)
	if _, err := d.ReadAt(mbr, 0); err != nil {
		return err
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return nil
	}
	for i := range 4 {
		e := mbr[446+16*i:]
		if e[4] != 0xEE {
			continue
		}
		n := uint32(min(lastLBA, 0xFFFFFFFF))
		if le32(e[12:]) == n {
			return nil
		}
		binary.LittleEndian.PutUint32(e[12:], n)
		_, err := d.WriteAt(mbr, 0)
		return err
	}
	return nil
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// guidAt decodes a GUID in its mixed-endian on-disk form.
func guidAt(b []byte) uuid.UUID {
	var u uuid.UUID
	u[0], u[1], u[2], u[3] = b[3], b[2], b[1], b[0]
	u[4], u[5] = b[5], b[4]
	u[6], u[7] = b[7], b[6]
	copy(u[8:], b[8:16])
	return u
}

// GUIDBytes encodes a GUID in its mixed-endian on-disk form.
func GUIDBytes(u uuid.UUID) [16]byte {
	var b [16]byte
	b[0], b[1], b[2], b[3] = u[3], u[2], u[1], u[0]
	b[4], b[5] = u[5], u[4]
	b[6], b[7] = u[7], u[6]
	copy(b[8:], u[8:16])
	return b
}

func utf16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
