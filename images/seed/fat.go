package seed

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// ReadWriterAt is a disk (or image file) FixFAT32 reads and patches.
type ReadWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// Fixup makes the seed filesystem Write left at offset start of f
// deterministic: every time 1980-01-01 00:00 (FAT's epoch) and the
// free-cluster count set.
func Fixup(f ReadWriterAt, start int64) error {
	return FixFAT32(f, start, time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC))
}

// FixFAT32 sets every directory entry's times in the FAT32 filesystem at
// offset start of f to the epoch. go-diskfs stamps the "." and ".." entries
// of subdirectories, and files, with the wall clock; this makes them
// reproducible. It also sets the FSInfo free-cluster count, which go-diskfs
// leaves unset (fsck.vfat reports it).
func FixFAT32(f ReadWriterAt, start int64, epoch time.Time) error {
	bpb := make([]byte, 512)
	if _, err := f.ReadAt(bpb, start); err != nil {
		return fmt.Errorf("FAT fixup: read boot sector: %w", err)
	}
	bps := int64(binary.LittleEndian.Uint16(bpb[0x0B:]))
	spc := int64(bpb[0x0D])
	reserved := int64(binary.LittleEndian.Uint16(bpb[0x0E:]))
	nfats := int64(bpb[0x10])
	fatSize := int64(binary.LittleEndian.Uint32(bpb[0x24:]))
	rootCluster := binary.LittleEndian.Uint32(bpb[0x2C:])
	if bps < 512 || spc == 0 || nfats == 0 || fatSize == 0 || bpb[0x1FE] != 0x55 || bpb[0x1FF] != 0xAA {
		return fmt.Errorf("FAT fixup: no FAT32 boot sector at offset %d", start)
	}
	fat := make([]byte, fatSize*bps)
	if _, err := f.ReadAt(fat, start+reserved*bps); err != nil {
		return fmt.Errorf("FAT fixup: read FAT: %w", err)
	}
	maxCluster := uint32(len(fat) / 4)
	dataStart := start + (reserved+nfats*fatSize)*bps
	clusterBytes := spc * bps
	date, tm := DOSDateTime(epoch)
	seen := map[uint32]bool{}
	var walk func(first uint32, depth int) error
	walk = func(first uint32, depth int) error {
		firstCluster := true
		if depth > 64 {
			return fmt.Errorf("FAT fixup: directories nested too deep")
		}
		for c := first; c >= 2 && c < 0x0FFFFFF8; c = binary.LittleEndian.Uint32(fat[c*4:]) & 0x0FFFFFFF {
			if c >= maxCluster || seen[c] {
				return fmt.Errorf("FAT fixup: bad cluster chain at %d", c)
			}
			seen[c] = true
			off := dataStart + int64(c-2)*clusterBytes
			buf := make([]byte, clusterBytes)
			if _, err := f.ReadAt(buf, off); err != nil {
				return err
			}
			var subdirs []uint32
			for i := 0; i+32 <= len(buf); i += 32 {
				e := buf[i : i+32]
				if e[0] == 0 {
					break
				}
				if e[0] == 0xE5 || e[11] == 0x0F {
					continue
				}
				// a first-level directory's ".." must say cluster 0 (the root)
				if firstCluster && depth == 1 && i == 32 && e[0] == '.' && e[1] == '.' {
					binary.LittleEndian.PutUint16(e[0x14:], 0)
					binary.LittleEndian.PutUint16(e[0x1A:], 0)
				}
				e[0x0D] = 0
				binary.LittleEndian.PutUint16(e[0x0E:], tm)
				binary.LittleEndian.PutUint16(e[0x10:], date)
				binary.LittleEndian.PutUint16(e[0x12:], date)
				binary.LittleEndian.PutUint16(e[0x16:], tm)
				binary.LittleEndian.PutUint16(e[0x18:], date)
				if e[11]&0x10 != 0 && e[0] != '.' {
					cl := uint32(binary.LittleEndian.Uint16(e[0x14:]))<<16 | uint32(binary.LittleEndian.Uint16(e[0x1A:]))
					subdirs = append(subdirs, cl)
				}
			}
			if _, err := f.WriteAt(buf, off); err != nil {
				return err
			}
			firstCluster = false
			for _, sd := range subdirs {
				if err := walk(sd, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(rootCluster, 0); err != nil {
		return err
	}
	// FSInfo: go-diskfs leaves the free cluster count unset
	totalSectors := int64(binary.LittleEndian.Uint16(bpb[0x13:]))
	if totalSectors == 0 {
		totalSectors = int64(binary.LittleEndian.Uint32(bpb[0x20:]))
	}
	clusters := uint32((totalSectors - (dataStart-start)/bps) / spc)
	var free uint32
	for c := uint32(2); c < clusters+2 && c < maxCluster; c++ {
		if binary.LittleEndian.Uint32(fat[c*4:])&0x0FFFFFFF == 0 {
			free++
		}
	}
	for _, sec := range []int64{int64(binary.LittleEndian.Uint16(bpb[0x30:])), int64(binary.LittleEndian.Uint16(bpb[0x32:])) + 1} {
		if sec <= 0 || sec >= reserved {
			continue
		}
		fsi := make([]byte, 512)
		if _, err := f.ReadAt(fsi, start+sec*bps); err != nil {
			return err
		}
		if string(fsi[0:4]) != "RRaA" || string(fsi[0x1E4:0x1E8]) != "rrAa" {
			continue
		}
		binary.LittleEndian.PutUint32(fsi[0x1E8:], free)
		if _, err := f.WriteAt(fsi, start+sec*bps); err != nil {
			return err
		}
	}
	return nil
}

// DOSDateTime encodes t in FAT's local-time fields, clamped to 1980.
func DOSDateTime(t time.Time) (date, tm uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tm = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	return date, tm
}
