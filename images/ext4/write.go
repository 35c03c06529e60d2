package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
)

// seqWriter gathers writes to neighbouring offsets into large WriteAt
// calls, made by a background goroutine while the next buffer fills. Writes
// must come in ascending offset order; the fixed (metadata) writes are
// merged in as the data passes them.
type seqWriter struct {
	buf   []byte
	off   int64
	fixed []fixedWrite
	free  chan []byte
	queue chan pending
	done  chan error
	err   error
}

type pending struct {
	buf []byte
	off int64
}

// fixedWrite is a metadata block (or run of blocks) at a known offset.
type fixedWrite struct {
	off  int64
	data []byte
}

const seqBuf = 8 << 20

func newSeqWriter(dst io.WriterAt, fixed []fixedWrite) *seqWriter {
	w := &seqWriter{fixed: fixed, free: make(chan []byte, 2), queue: make(chan pending, 2), done: make(chan error, 1)}
	w.free <- make([]byte, 0, seqBuf)
	w.free <- make([]byte, 0, seqBuf)
	w.buf = <-w.free
	queue := w.queue
	go func() {
		var err error
		for p := range queue {
			if err == nil {
				if _, werr := dst.WriteAt(p.buf, p.off); werr != nil {
					err = fmt.Errorf("ext4: write at %d: %w", p.off, werr)
				}
			}
			w.free <- p.buf[:0]
		}
		w.done <- err
	}()
	return w
}

// reserve returns n bytes of buffer that will be written at off.
func (w *seqWriter) reserve(off int64, n int) ([]byte, error) {
	for len(w.fixed) > 0 && w.fixed[0].off < off {
		f := w.fixed[0]
		w.fixed = w.fixed[1:]
		if err := w.put(f.off, f.data); err != nil {
			return nil, err
		}
	}
	return w.space(off, n)
}

func (w *seqWriter) put(off int64, data []byte) error {
	for len(data) > 0 {
		k := min(len(data), seqBuf)
		b, err := w.space(off, k)
		if err != nil {
			return err
		}
		copy(b, data[:k])
		data = data[k:]
		off += int64(k)
	}
	return nil
}

func (w *seqWriter) space(off int64, n int) ([]byte, error) {
	end := w.off + int64(len(w.buf))
	if off < end {
		return nil, fmt.Errorf("ext4: internal error: write at %d after %d", off, end)
	}
	if off != end || len(w.buf)+n > cap(w.buf) {
		if err := w.flush(); err != nil {
			return nil, err
		}
		w.off = off
	}
	k := len(w.buf)
	w.buf = w.buf[:k+n]
	return w.buf[k : k+n], nil
}

func (w *seqWriter) flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	w.queue <- pending{buf: w.buf, off: w.off}
	w.off += int64(len(w.buf))
	w.buf = <-w.free
	return nil
}

// finish writes the remaining fixed writes and waits for every write.
func (w *seqWriter) finish() error {
	for _, f := range w.fixed {
		if err := w.put(f.off, f.data); err != nil {
			return err
		}
	}
	w.fixed = nil
	if err := w.flush(); err != nil {
		return err
	}
	return w.close()
}

func (w *seqWriter) close() error {
	if w.queue != nil {
		close(w.queue)
		w.queue = nil
		w.err = <-w.done
	}
	return w.err
}

// writeInode writes an inode's data blocks: directory entries, a slow
// symlink's target, or a file's content streamed from its source.
func (w *seqWriter) writeInode(in *inode) error {
	if len(in.extents) == 0 {
		return nil
	}
	if in.data != nil {
		for _, e := range in.extents {
			data := in.data[int(e.logical)*BlockSize : int(e.logical+e.length)*BlockSize]
			off := int64(e.start) * BlockSize
			for len(data) > 0 {
				k := min(len(data), seqBuf)
				b, err := w.reserve(off, k)
				if err != nil {
					return err
				}
				copy(b, data[:k])
				data = data[k:]
				off += int64(k)
			}
		}
		return nil
	}
	n := in.node
	var r io.Reader = zeroReader{}
	if n.Open != nil {
		rc, err := n.Open()
		if err != nil {
			return fmt.Errorf("ext4: /%s: %w", n.Path, err)
		}
		defer rc.Close()
		r = rc
	}
	remaining := n.Size
	for _, e := range in.extents {
		off := int64(e.start) * BlockSize
		span := int64(e.length) * BlockSize
		data := min(span, remaining)
		for done := int64(0); done < span; {
			chunk := min(span-done, seqBuf)
			b, err := w.reserve(off+done, int(chunk))
			if err != nil {
				return err
			}
			k := max(0, min(chunk, data-done))
			if _, err := io.ReadFull(r, b[:k]); err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
					return fmt.Errorf("ext4: /%s: content is shorter than its size %d; did it change during the build?", n.Path, n.Size)
				}
				return fmt.Errorf("ext4: read /%s: %w", n.Path, err)
			}
			clear(b[k:])
			done += chunk
		}
		remaining -= data
	}
	if n.Open != nil {
		var one [1]byte
		if k, _ := r.Read(one[:]); k > 0 {
			return fmt.Errorf("ext4: /%s: content is longer than its size %d; did it change during the build?", n.Path, n.Size)
		}
	}
	return nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func le16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
func le32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

// inodeBytes encodes one inode into b (inodeSize bytes).
func (l *fsLayout) inodeBytes(in *inode, b []byte) error {
	n := in.node
	t := uint32(l.p.Time)
	epochBits := uint32(l.p.Time>>32) & 3
	le16(b, 0x00, unixMode(n.Mode))
	le16(b, 0x02, uint16(n.UID))
	le16(b, 0x78, uint16(n.UID>>16))
	le16(b, 0x18, uint16(n.GID))
	le16(b, 0x7A, uint16(n.GID>>16))
	size := uint64(n.Size)
	switch {
	case n.Mode.IsDir():
		size = uint64(len(in.data))
	case n.Mode&fs.ModeSymlink != 0:
		size = uint64(len(n.Target))
	}
	le32(b, 0x04, uint32(size))
	le32(b, 0x6C, uint32(size>>32))
	le32(b, 0x08, t)
	le32(b, 0x0C, t)
	le32(b, 0x10, t)
	le16(b, 0x1A, uint16(in.links))
	sectors := (in.blocks + uint64(len(in.tree))) * (BlockSize / 512)
	if sectors > 1<<32-1 {
		return fmt.Errorf("ext4: /%s: larger than 2 TiB, which this writer does not support", n.Path)
	}
	le32(b, 0x1C, uint32(sectors))
	le16(b, 0x80, extraIsize)
	le32(b, 0x84, epochBits)
	le32(b, 0x88, epochBits)
	le32(b, 0x8C, epochBits)
	le32(b, 0x90, t)
	le32(b, 0x94, epochBits)
	if n.Mode&fs.ModeSymlink != 0 && len(n.Target) < 60 {
		copy(b[0x28:0x28+60], n.Target)
		return nil
	}
	le32(b, 0x20, flagExtents)
	ib := b[0x28 : 0x28+60]
	if len(in.tree) == 0 {
		extentHeader(ib, len(in.extents), 4, 0)
		for i, e := range in.extents {
			putExtent(ib[12+12*i:], e)
		}
		return nil
	}
	extentHeader(ib, len(in.tree), 4, 1)
	for i, leaf := range in.tree {
		first := in.extents[i*extentsPerLeaf]
		x := ib[12+12*i:]
		le32(x, 0, first.logical)
		le32(x, 4, uint32(leaf))
		le16(x, 8, uint16(leaf>>32))
	}
	return nil
}

func extentHeader(b []byte, entries, maxEntries, depth int) {
	le16(b, 0, 0xF30A)
	le16(b, 2, uint16(entries))
	le16(b, 4, uint16(maxEntries))
	le16(b, 6, uint16(depth))
}

func putExtent(b []byte, e extent) {
	le32(b, 0, e.logical)
	le16(b, 4, uint16(e.length))
	le16(b, 6, uint16(e.start>>32))
	le32(b, 8, uint32(e.start))
}

// leafBlocks encodes a depth-1 inode's extent leaves.
func leafBlocks(in *inode) [][]byte {
	var out [][]byte
	for i := range in.tree {
		b := make([]byte, BlockSize)
		part := in.extents[i*extentsPerLeaf : min(len(in.extents), (i+1)*extentsPerLeaf)]
		extentHeader(b, len(part), extentsPerLeaf, 0)
		for k, e := range part {
			putExtent(b[12+12*k:], e)
		}
		out = append(out, b)
	}
	return out
}

// metadata encodes inode tables, extent leaves, the journal superblock,
// bitmaps, group descriptors and superblocks as writes sorted by offset.
func (l *fsLayout) metadata(inodes []*inode) ([]fixedWrite, error) {
	var out []fixedWrite
	add := func(block uint64, data []byte) {
		out = append(out, fixedWrite{off: int64(block) * BlockSize, data: data})
	}
	all := inodes
	if l.journal != nil {
		all = append(all[:len(all):len(all)], l.journal)
	}
	maxIno := uint32(firstIno - 1)
	for _, in := range all {
		maxIno = max(maxIno, in.ino)
	}
	table := make([]byte, int(maxIno)*inodeSize)
	dirs := make([]uint32, l.groups)
	for _, in := range all {
		if err := l.inodeBytes(in, table[int(in.ino-1)*inodeSize:int(in.ino)*inodeSize]); err != nil {
			return nil, err
		}
		if in.node.Mode.IsDir() {
			dirs[(in.ino-1)/l.ipg]++
		}
		for k, leaf := range leafBlocks(in) {
			add(in.tree[k], leaf)
		}
	}
	zeros := make([]byte, min(l.itbPerGroup*BlockSize, seqBuf))
	zero := func(block, n uint64) {
		for n > 0 {
			k := min(n, uint64(len(zeros))/BlockSize)
			add(block, zeros[:k*BlockSize])
			block += k
			n -= k
		}
	}
	for g := 0; g < l.groups; g++ {
		lo := uint64(g) * uint64(l.ipg) * inodeSize
		var used uint64
		if lo < uint64(len(table)) {
			hi := min(uint64(len(table)), lo+uint64(l.ipg)*inodeSize)
			seg := make([]byte, (hi-lo+BlockSize-1)/BlockSize*BlockSize)
			copy(seg, table[lo:hi])
			add(l.itable[g], seg)
			used = uint64(len(seg)) / BlockSize
		}
		if !l.p.Zeroed {
			zero(l.itable[g]+used, l.itbPerGroup-used)
		}
	}
	if j := l.journal; j != nil {
		add(j.extents[0].start, l.journalSuper())
		if !l.p.Zeroed {
			for _, e := range j.extents {
				s, n := e.start, uint64(e.length)
				if e.logical == 0 {
					s, n = s+1, n-1
				}
				zero(s, n)
			}
		}
	}

	// bitmaps and descriptors
	gdt := make([]byte, l.gdtBlocks*BlockSize)
	var freeBlocks uint64
	var freeInodes uint32
	for g := 0; g < l.groups; g++ {
		// bits past the group's blocks or inodes are padding, set like mke2fs
		bm := make([]byte, BlockSize)
		start := uint64(g) * uint64(l.bpg)
		free := uint32(0)
		for i := uint64(0); i < uint64(l.bpg); i++ {
			b := start + i
			if b >= l.blocks || l.used[b/8]&(1<<(b%8)) != 0 {
				bm[i/8] |= 1 << (i % 8)
			} else {
				free++
			}
		}
		fillBits(bm, uint64(l.bpg))
		im := make([]byte, BlockSize)
		usedInodes := uint32(0)
		for i := uint32(0); i < l.ipg && uint32(g)*l.ipg+i+1 <= maxIno; i++ {
			im[i/8] |= 1 << (i % 8)
			usedInodes++
		}
		fillBits(im, uint64(l.ipg))
		add(l.bbitmap[g], bm)
		add(l.ibitmap[g], im)
		d := gdt[g*descSize:]
		le32(d, 0x00, uint32(l.bbitmap[g]))
		le32(d, 0x04, uint32(l.ibitmap[g]))
		le32(d, 0x08, uint32(l.itable[g]))
		le16(d, 0x0C, uint16(free))
		le16(d, 0x0E, uint16(l.ipg-usedInodes))
		le16(d, 0x10, uint16(dirs[g]))
		freeBlocks += uint64(free)
		freeInodes += l.ipg - usedInodes
	}
	l.freeBlocks, l.freeInodes = freeBlocks, freeInodes
	for g := 0; g < l.groups; g++ {
		if !l.isBackupGroup(g) {
			continue
		}
		sb := l.superblock(g)
		start := uint64(g) * uint64(l.bpg)
		if g == 0 {
			blk := make([]byte, BlockSize-1024)
			copy(blk, sb)
			out = append(out, fixedWrite{off: 1024, data: blk})
		} else {
			blk := make([]byte, BlockSize)
			copy(blk, sb)
			add(start, blk)
		}
		add(start+1, gdt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].off < out[j].off })
	for i := 1; i < len(out); i++ {
		if out[i].off < out[i-1].off+int64(len(out[i-1].data)) {
			return nil, fmt.Errorf("ext4: internal error: metadata at %d overlaps the block at %d", out[i].off, out[i-1].off)
		}
	}
	return out, nil
}

func (l *fsLayout) superblock(group int) []byte {
	b := make([]byte, 1024)
	inodes := uint32(l.groups) * l.ipg
	t := uint32(l.p.Time)
	le32(b, 0x00, inodes)
	le32(b, 0x04, uint32(l.blocks))
	le32(b, 0x0C, uint32(l.freeBlocks))
	le32(b, 0x10, l.freeInodes)
	le32(b, 0x14, 0) // first data block
	le32(b, 0x18, 2) // 4 KiB
	le32(b, 0x1C, 2)
	le32(b, 0x20, l.bpg)
	le32(b, 0x24, l.bpg)
	le32(b, 0x28, l.ipg)
	le32(b, 0x30, t) // wtime
	le16(b, 0x36, 0xFFFF)
	le16(b, 0x38, 0xEF53)
	le16(b, 0x3A, 1) // clean
	le16(b, 0x3C, 1) // errors: continue
	le32(b, 0x40, t) // lastcheck
	le32(b, 0x4C, 1) // dynamic revision
	le32(b, 0x54, firstIno)
	le16(b, 0x58, inodeSize)
	le16(b, 0x5A, uint16(group))
	compat := uint32(0)
	if l.journal != nil {
		compat |= compatHasJournal
	}
	le32(b, 0x5C, compat)
	le32(b, 0x60, incompatFiletype|incompatExtents|incompatFlexBG)
	le32(b, 0x64, roCompatSparse|roCompatLargeFile|roCompatDirNlink|roCompatExtraIsz)
	copy(b[0x68:0x78], l.p.UUID[:])
	copy(b[0x78:0x88], l.p.Label)
	copy(b[0xEC:0xFC], l.p.HashSeed[:])
	b[0xFC] = 1       // half_md4, as mke2fs
	le32(b, 0x108, t) // mkfs time
	le16(b, 0x15C, extraIsize)
	le16(b, 0x15E, extraIsize)
	le32(b, 0x160, 1) // signed directory hash, as mke2fs on x86
	b[0x174] = 4      // 16 groups per flex group
	hi := byte(l.p.Time >> 32)
	for _, o := range []int{0x274, 0x276, 0x277} { // wtime, mkfs time, lastcheck: high bytes
		b[o] = hi
	}
	if j := l.journal; j != nil {
		le32(b, 0xE0, journalIno)
		b[0xFD] = 1 // s_jnl_blocks holds a copy of the journal inode's blocks
		ib := make([]byte, inodeSize)
		_ = l.inodeBytes(j, ib)
		copy(b[0x10C:0x10C+60], ib[0x28:0x28+60])
		le32(b, 0x10C+60, uint32(uint64(j.node.Size)>>32))
		le32(b, 0x10C+64, uint32(j.node.Size))
	}
	return b
}

// fillBits sets every bit of b from bit n on.
func fillBits(b []byte, n uint64) {
	for ; n%8 != 0; n++ {
		b[n/8] |= 1 << (n % 8)
	}
	for i := n / 8; i < uint64(len(b)); i++ {
		b[i] = 0xFF
	}
}

// journalSuper is an empty jbd2 v2 journal superblock (big endian).
func (l *fsLayout) journalSuper() []byte {
	j := l.journal
	b := make([]byte, BlockSize)
	be := binary.BigEndian
	be.PutUint32(b[0x0:], 0xC03B3998)
	be.PutUint32(b[0x4:], 4) // superblock v2
	be.PutUint32(b[0xC:], BlockSize)
	be.PutUint32(b[0x10:], uint32(j.blocks))
	be.PutUint32(b[0x14:], 1) // first log block
	be.PutUint32(b[0x18:], 1) // sequence
	copy(b[0x30:0x40], l.p.UUID[:])
	be.PutUint32(b[0x40:], 1) // users
	return b
}

func (l *fsLayout) stats(nodes int) Stats {
	return Stats{Blocks: l.blocks, FreeBlocks: l.freeBlocks, Inodes: uint32(l.groups) * l.ipg, FreeInodes: l.freeInodes, Groups: l.groups}
}
