package build

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// go-diskfs v1.9.4 stamps ext4 with the wall clock (superblock times, every
// inode's ctime and nanoseconds) and a random directory hash seed. fixExt4
// rewrites those fields in place to fixed values and recomputes the
// superblock and inode checksums, so the same tree gives the same bytes.
// The hash seed is unused by go-diskfs (it writes linear directories).

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is ext4's raw CRC32C (no pre or post inversion).
func crc32c(seed uint32, p []byte) uint32 { return ^crc32.Update(^seed, castagnoli, p) }

const (
	sbOff              = 1024
	extMagic           = 0xEF53
	incompat64Bit      = 0x80
	incompatCsumSeed   = 0x2000
	roCompatMetaCsum   = 0x400
	roCompatSparse     = 0x1
	bgInodeUninit      = 0x1
	inodeExtraTimesEnd = 0x98
)

type extGeometry struct {
	blockSize      int64
	blocksPerGroup uint32
	inodesPerGroup uint32
	inodeSize      int
	groups         int
	firstDataBlock uint32
	descSize       int
	csumSeed       uint32
	metaCsum       bool
	sparse         bool
}

// fixExt4 normalises the ext4 filesystem at [start, start+size) of f.
func fixExt4(f *os.File, start, size int64, hashSeed [16]byte, epoch int64) error {
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, start+sbOff); err != nil {
		return fmt.Errorf("ext4 fixup: read superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != extMagic {
		return fmt.Errorf("ext4 fixup: no ext4 superblock at offset %d", start+sbOff)
	}
	g := extGeometry{
		blockSize:      1024 << binary.LittleEndian.Uint32(sb[0x18:]),
		blocksPerGroup: binary.LittleEndian.Uint32(sb[0x20:]),
		inodesPerGroup: binary.LittleEndian.Uint32(sb[0x28:]),
		inodeSize:      int(binary.LittleEndian.Uint16(sb[0x58:])),
		firstDataBlock: binary.LittleEndian.Uint32(sb[0x14:]),
	}
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	ro := binary.LittleEndian.Uint32(sb[0x64:])
	g.metaCsum = ro&roCompatMetaCsum != 0
	g.sparse = ro&roCompatSparse != 0
	blocks := uint64(binary.LittleEndian.Uint32(sb[0x04:]))
	if incompat&incompat64Bit != 0 {
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
		g.descSize = int(binary.LittleEndian.Uint16(sb[0xFE:]))
	}
	if g.descSize == 0 {
		g.descSize = 32
	}
	g.groups = int((blocks - uint64(g.firstDataBlock) + uint64(g.blocksPerGroup) - 1) / uint64(g.blocksPerGroup))
	if incompat&incompatCsumSeed != 0 {
		g.csumSeed = binary.LittleEndian.Uint32(sb[0x270:])
	} else {
		g.csumSeed = crc32c(0xffffffff, sb[0x68:0x78])
	}
	if g.blockSize < 1024 || g.inodeSize < 128 || g.groups <= 0 || g.blocksPerGroup == 0 {
		return fmt.Errorf("ext4 fixup: implausible superblock")
	}

	// primary and backup superblocks
	patchSB := func(off int64) error {
		b := make([]byte, 1024)
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		if binary.LittleEndian.Uint16(b[0x38:]) != extMagic {
			return nil
		}
		e := uint32(epoch)
		hi := byte(epoch >> 32)
		for _, o := range []int{0x2C, 0x30, 0x40, 0x108} { // mtime, wtime, lastcheck, mkfs_time
			binary.LittleEndian.PutUint32(b[o:], e)
		}
		for _, o := range []int{0x274, 0x275, 0x276, 0x277} {
			b[o] = hi
		}
		copy(b[0xEC:0xFC], hashSeed[:])
		if g.metaCsum {
			binary.LittleEndian.PutUint32(b[0x3FC:], crc32c(0xffffffff, b[:0x3FC]))
		}
		_, err := f.WriteAt(b, off)
		return err
	}
	if err := patchSB(start + sbOff); err != nil {
		return fmt.Errorf("ext4 fixup: superblock: %w", err)
	}
	for grp := 1; grp < g.groups; grp++ {
		if g.sparse && !isSparseGroup(grp) {
			continue
		}
		off := start + (int64(grp)*int64(g.blocksPerGroup)+int64(g.firstDataBlock))*g.blockSize
		if off+1024 > start+size {
			break
		}
		if err := patchSB(off); err != nil {
			return fmt.Errorf("ext4 fixup: backup superblock in group %d: %w", grp, err)
		}
	}

	// group descriptors follow the superblock's block
	gdtOff := start + int64(g.firstDataBlock+1)*g.blockSize
	gdt := make([]byte, g.groups*g.descSize)
	if _, err := f.ReadAt(gdt, gdtOff); err != nil {
		return fmt.Errorf("ext4 fixup: read group descriptors: %w", err)
	}
	table := make([]byte, int(g.inodesPerGroup)*g.inodeSize)
	for grp := 0; grp < g.groups; grp++ {
		d := gdt[grp*g.descSize:]
		if binary.LittleEndian.Uint16(d[0x12:])&bgInodeUninit != 0 {
			continue
		}
		itable := uint64(binary.LittleEndian.Uint32(d[0x08:]))
		if g.descSize >= 64 {
			itable |= uint64(binary.LittleEndian.Uint32(d[0x28:])) << 32
		}
		unused := uint32(binary.LittleEndian.Uint16(d[0x1C:]))
		used := g.inodesPerGroup - min(unused, g.inodesPerGroup)
		if used == 0 {
			continue
		}
		n := int(used) * g.inodeSize
		toff := start + int64(itable)*g.blockSize
		if _, err := f.ReadAt(table[:n], toff); err != nil && err != io.EOF {
			return fmt.Errorf("ext4 fixup: read inode table of group %d: %w", grp, err)
		}
		changed := false
		for i := 0; i < int(used); i++ {
			in := table[i*g.inodeSize : (i+1)*g.inodeSize]
			if binary.LittleEndian.Uint16(in[0:]) == 0 && binary.LittleEndian.Uint16(in[0x1A:]) == 0 {
				continue // free inode
			}
			fixInode(in, uint32(grp)*g.inodesPerGroup+uint32(i)+1, epoch, g)
			changed = true
		}
		if changed {
			if _, err := f.WriteAt(table[:n], toff); err != nil {
				return fmt.Errorf("ext4 fixup: write inode table of group %d: %w", grp, err)
			}
		}
	}
	return nil
}

func fixInode(in []byte, number uint32, epoch int64, g extGeometry) {
	e := uint32(epoch)
	for _, o := range []int{0x08, 0x0C, 0x10} { // atime, ctime, mtime
		binary.LittleEndian.PutUint32(in[o:], e)
	}
	extra := 0
	if g.inodeSize > 128 {
		extra = int(binary.LittleEndian.Uint16(in[0x80:]))
	}
	epochBits := uint32((epoch >> 32) & 3) // no nanoseconds
	if 0x80+extra >= inodeExtraTimesEnd {
		for _, o := range []int{0x84, 0x88, 0x8C, 0x94} { // ctime, mtime, atime, crtime extra
			binary.LittleEndian.PutUint32(in[o:], epochBits)
		}
		binary.LittleEndian.PutUint32(in[0x90:], e) // crtime
	}
	// go-diskfs writes the checksum even without metadata_csum; recompute it
	// either way so no trace of the original times remains.
	in[0x7C], in[0x7D] = 0, 0
	hasHi := 0x80+extra >= 0x84
	if hasHi {
		in[0x82], in[0x83] = 0, 0
	}
	var nb [8]byte
	binary.LittleEndian.PutUint32(nb[0:], number)
	binary.LittleEndian.PutUint32(nb[4:], binary.LittleEndian.Uint32(in[0x64:])) // generation
	c := crc32c(g.csumSeed, nb[:4])
	c = crc32c(c, nb[4:])
	c = crc32c(c, in)
	binary.LittleEndian.PutUint16(in[0x7C:], uint16(c))
	if hasHi {
		binary.LittleEndian.PutUint16(in[0x82:], uint16(c>>16))
	}
}

func isSparseGroup(g int) bool {
	if g <= 1 {
		return true
	}
	for _, b := range []int{3, 5, 7} {
		n := b
		for n < g {
			n *= b
		}
		if n == g {
			return true
		}
	}
	return false
}
