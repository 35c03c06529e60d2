// Package ext4 writes a complete ext4 filesystem from a list of nodes in one
// pass, the way `mkfs.ext4 -d` does: every block is planned first (inodes,
// directory blocks, file extents), then file contents are streamed into the
// image in large sequential writes and the metadata is written once.
//
// The filesystem has 4 KiB blocks, 256-byte inodes, extents, flex_bg (all
// bitmaps and inode tables packed at the start), sparse superblock backups,
// linear directories, an optional internal journal, and no metadata
// checksums. Every timestamp is Params.Time and nothing is random, so the
// same nodes and params give the same bytes. The output is checked by
// e2fsck -fn in the tests.
//
// It exists because go-diskfs v1.9.4 rescans the block bitmap on every
// write and makes many small I/O calls, about 5x slower than mkfs.ext4 -d;
// see docs/decisions/0012-ext4-writer.md.
package ext4

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// BlockSize is the filesystem block size.
const BlockSize = 4096

const (
	inodeSize      = 256
	extraIsize     = 32
	firstIno       = 11
	rootIno        = 2
	journalIno     = 8
	lostFoundIno   = 11
	maxExtentLen   = 32768 // initialized extent limit
	extentsPerLeaf = (BlockSize - 12) / 12
	descSize       = 32
	maxLinks       = 65000

	compatHasJournal  = 0x4
	incompatFiletype  = 0x2
	incompatExtents   = 0x40
	incompatFlexBG    = 0x200
	roCompatSparse    = 0x1
	roCompatLargeFile = 0x2
	roCompatDirNlink  = 0x20
	roCompatExtraIsz  = 0x40

	flagExtents = 0x80000

	sIFREG = 0x8000
	sIFDIR = 0x4000
	sIFLNK = 0xA000
)

// ErrNoSpace is returned when the nodes do not fit in Params.Size.
var ErrNoSpace = errors.New("ext4: the files do not fit")

// Node is one file, directory or symlink of the filesystem.
type Node struct {
	// Path is slash-separated and relative to the root ("etc/passwd"); "." is the root.
	Path string
	// Mode holds the type (fs.ModeDir, fs.ModeSymlink, 0 for a regular
	// file) and the permission bits, setuid, setgid and sticky included.
	Mode     fs.FileMode
	UID, GID uint32
	// Size of a regular file; Open must yield exactly this many bytes.
	Size int64
	// Target of a symlink (at most 4095 bytes).
	Target string
	// Open returns a regular file's content; nil reads as Size zero bytes.
	Open func() (io.ReadCloser, error)
}

// Params describe the filesystem to write.
type Params struct {
	// Size is the space in bytes; the filesystem uses whole blocks of it.
	Size int64
	// UUID and HashSeed go into the superblock (HashSeed only matters to
	// htree directories, which this writer does not make).
	UUID, HashSeed [16]byte
	// Label is the volume name (at most 16 bytes).
	Label string
	// Time is every timestamp, in seconds since 1970.
	Time int64
	// BytesPerInode sets the inode count (default 16384, like mke2fs).
	BytesPerInode int64
	// Journal adds an internal journal of mke2fs's default size.
	Journal bool
	// Zeroed says the destination already reads as zeros (a new sparse
	// file), so unused inode-table blocks need not be written.
	Zeroed bool
	// BlocksPerGroup defaults to 32768; smaller values (multiples of 8) are
	// for tests that want many groups from little data.
	BlocksPerGroup uint32

	maxExtent uint32 // tests: split extents sooner
}

// Stats describe what Write made.
type Stats struct {
	Blocks, FreeBlocks uint64
	Inodes, FreeInodes uint32
	Groups             int
}

// inode is a planned inode.
type inode struct {
	node     *Node
	ino      uint32
	links    uint32
	children []*inode // directories, sorted by name
	name     string
	parent   *inode
	blocks   uint64 // data blocks
	extents  []extent
	tree     []uint64 // extent leaf blocks (depth 1)
	data     []byte   // directory or slow symlink content
}

type extent struct {
	logical uint32
	start   uint64
	length  uint32
}

type fsLayout struct {
	p           Params
	blocks      uint64
	bpg         uint32
	groups      int
	gdtBlocks   uint64
	ipg         uint32
	itbPerGroup uint64
	bbitmap     []uint64 // per group
	ibitmap     []uint64
	itable      []uint64
	used        []byte // block bitmap of the whole filesystem
	next        uint64
	journal     *inode

	freeBlocks uint64
	freeInodes uint32
}

func (l *fsLayout) isBackupGroup(g int) bool {
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

// reservedEnd returns the end of the superblock+GDT copy covering block b, or 0.
func (l *fsLayout) reservedEnd(b uint64) uint64 {
	g := int(b / uint64(l.bpg))
	if !l.isBackupGroup(g) {
		return 0
	}
	s := uint64(g) * uint64(l.bpg)
	if b < s+1+l.gdtBlocks {
		return s + 1 + l.gdtBlocks
	}
	return 0
}

func (l *fsLayout) mark(start, n uint64) {
	for b := start; b < start+n; b++ {
		l.used[b/8] |= 1 << (b % 8)
	}
}

// allocRun returns up to n free blocks in one run, after the last allocation.
func (l *fsLayout) allocRun(n uint64) (uint64, uint64, error) {
	for {
		if e := l.reservedEnd(l.next); e != 0 {
			l.next = e
			continue
		}
		break
	}
	if l.next >= l.blocks {
		return 0, 0, ErrNoSpace
	}
	start := l.next
	end := min(start+n, l.blocks)
	// stop before the next group's backup superblock
	for g := start/uint64(l.bpg) + 1; g*uint64(l.bpg) < end; g++ {
		if l.isBackupGroup(int(g)) {
			end = g * uint64(l.bpg)
			break
		}
	}
	l.mark(start, end-start)
	l.next = end
	return start, end - start, nil
}

// allocContig returns n contiguous blocks, skipping runs that are too short.
func (l *fsLayout) allocContig(n uint64) (uint64, error) {
	for {
		s, got, err := l.allocRun(n)
		if err != nil {
			return 0, err
		}
		if got == n {
			return s, nil
		}
		// too short: give the run back and move past it
		for b := s; b < s+got; b++ {
			l.used[b/8] &^= 1 << (b % 8)
		}
		l.next = s + got
	}
}

// extents allocates n data blocks for an inode, in as few runs as possible.
func (l *fsLayout) allocExtents(in *inode, n uint64) error {
	maxLen := uint64(maxExtentLen)
	if l.p.maxExtent != 0 {
		maxLen = uint64(l.p.maxExtent)
	}
	var logical uint64
	for logical < n {
		s, got, err := l.allocRun(min(n-logical, maxLen))
		if err != nil {
			return err
		}
		if k := len(in.extents); k > 0 {
			last := &in.extents[k-1]
			if last.start+uint64(last.length) == s && uint64(last.length)+got <= maxLen {
				last.length += uint32(got)
				logical += got
				continue
			}
		}
		in.extents = append(in.extents, extent{logical: uint32(logical), start: s, length: uint32(got)})
		logical += got
	}
	in.blocks = n
	if len(in.extents) > 4 {
		leaves := (len(in.extents) + extentsPerLeaf - 1) / extentsPerLeaf
		if leaves > 4 {
			return fmt.Errorf("ext4: a file of %d blocks needs %d extents, more than this writer supports (%d)", n, len(in.extents), 4*extentsPerLeaf)
		}
		for i := 0; i < leaves; i++ {
			b, _, err := l.allocRun(1)
			if err != nil {
				return err
			}
			in.tree = append(in.tree, b)
		}
	}
	return nil
}

// Write writes the filesystem holding nodes to dst at offset 0. Parents
// must be among the nodes (the root "." is optional); paths must be unique.
// Every WriteAt goes to a higher offset than the one before (so dst can
// hash the image as it goes, zeros filling the gaps), from one goroutine
// other than the caller's, at most 8 MiB at a time.
func Write(ctx context.Context, dst io.WriterAt, nodes []Node, p Params) (Stats, error) {
	if p.BytesPerInode == 0 {
		p.BytesPerInode = 16384
	}
	if p.BlocksPerGroup == 0 {
		p.BlocksPerGroup = 8 * BlockSize
	}
	if p.BlocksPerGroup%8 != 0 || p.BlocksPerGroup > 8*BlockSize || p.BlocksPerGroup < 64 {
		return Stats{}, fmt.Errorf("ext4: %d blocks per group: want a multiple of 8 from 64 to %d", p.BlocksPerGroup, 8*BlockSize)
	}
	if len(p.Label) > 16 {
		return Stats{}, fmt.Errorf("ext4: label %q is longer than 16 bytes; shorten it", p.Label)
	}
	inodes, root, err := planTree(nodes)
	if err != nil {
		return Stats{}, err
	}
	l, err := planLayout(p, len(inodes))
	if err != nil {
		return Stats{}, err
	}
	if p.Journal {
		if err := l.planJournal(); err != nil {
			return Stats{}, err
		}
	}
	// data blocks in tree order: directories next to their files
	for _, in := range inodes {
		n := in.node
		switch {
		case n.Mode.IsDir():
			in.data = dirBlocks(in)
			if in.ino == lostFoundIno && len(in.data) < 4*BlockSize {
				in.data = append(in.data, emptyDirBlocks(4-len(in.data)/BlockSize)...)
			}
			if err := l.allocExtents(in, uint64(len(in.data)/BlockSize)); err != nil {
				return Stats{}, noSpace(err, p)
			}
		case n.Mode&fs.ModeSymlink != 0:
			if len(n.Target) >= 60 {
				in.data = make([]byte, BlockSize)
				copy(in.data, n.Target)
				if err := l.allocExtents(in, 1); err != nil {
					return Stats{}, noSpace(err, p)
				}
			}
		default:
			if err := l.allocExtents(in, uint64((n.Size+BlockSize-1)/BlockSize)); err != nil {
				return Stats{}, noSpace(err, p)
			}
		}
	}
	_ = root

	fixed, err := l.metadata(inodes)
	if err != nil {
		return Stats{}, err
	}
	w := newSeqWriter(dst, fixed)
	defer w.close()
	// everything in ascending offset order: metadata blocks are merged in
	// between the contents as the writer passes them
	for i, in := range inodes {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return Stats{}, err
			}
		}
		if err := w.writeInode(in); err != nil {
			return Stats{}, err
		}
	}
	if err := w.finish(); err != nil {
		return Stats{}, err
	}
	return l.stats(len(inodes)), nil
}

func noSpace(err error, p Params) error {
	if errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w in %d MiB; make the filesystem larger", ErrNoSpace, p.Size>>20)
	}
	return err
}

// planTree numbers the inodes (root 2, lost+found 11, then in path order)
// and links every node to its parent.
func planTree(nodes []Node) ([]*inode, *inode, error) {
	byPath := make(map[string]*inode, len(nodes)+2)
	var rootNode, lfNode *Node
	rest := make([]*Node, 0, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		c := path.Clean("/" + n.Path)[1:]
		if c == "" {
			c = "."
		}
		if c != n.Path {
			return nil, nil, fmt.Errorf("ext4: path %q is not clean; use %q", n.Path, c)
		}
		if _, dup := byPath[c]; dup {
			return nil, nil, fmt.Errorf("ext4: path %q appears twice", c)
		}
		byPath[c] = nil
		switch {
		case c == ".":
			if !n.Mode.IsDir() {
				return nil, nil, errors.New("ext4: the root must be a directory")
			}
			rootNode = n
		case c == "lost+found":
			if !n.Mode.IsDir() {
				return nil, nil, errors.New("ext4: /lost+found must be a directory; remove it or make it one")
			}
			lfNode = n
		default:
			rest = append(rest, n)
		}
		switch {
		case n.Mode.IsDir(), n.Mode&fs.ModeSymlink != 0:
			if n.Mode&fs.ModeSymlink != 0 && (len(n.Target) == 0 || len(n.Target) >= BlockSize) {
				return nil, nil, fmt.Errorf("ext4: symlink /%s: target of %d bytes; it must be 1 to %d bytes", c, len(n.Target), BlockSize-1)
			}
		case n.Mode.Type() == 0:
			if n.Size < 0 {
				return nil, nil, fmt.Errorf("ext4: /%s: negative size", c)
			}
		default:
			return nil, nil, fmt.Errorf("ext4: /%s: %s files are not supported; leave them out (devtmpfs makes device nodes)", c, n.Mode.Type())
		}
	}
	if rootNode == nil {
		rootNode = &Node{Path: ".", Mode: fs.ModeDir | 0o755}
	}
	if lfNode == nil {
		lfNode = &Node{Path: "lost+found", Mode: fs.ModeDir | 0o700}
	}
	sort.Slice(rest, func(i, j int) bool { return lessPath(rest[i].Path, rest[j].Path) })
	root := &inode{node: rootNode, ino: rootIno}
	lf := &inode{node: lfNode, ino: lostFoundIno, name: "lost+found", parent: root}
	inodes := []*inode{root, lf}
	byPath["."], byPath["lost+found"] = root, lf
	next := uint32(lostFoundIno + 1)
	for _, n := range rest {
		dir, name := path.Split(n.Path)
		dir = strings.TrimSuffix(dir, "/")
		if dir == "" {
			dir = "."
		}
		if len(name) > 255 {
			return nil, nil, fmt.Errorf("ext4: /%s: name longer than 255 bytes", n.Path)
		}
		parent := byPath[dir]
		if parent == nil || !parent.node.Mode.IsDir() {
			return nil, nil, fmt.Errorf("ext4: /%s: parent directory /%s is missing from the nodes", n.Path, dir)
		}
		in := &inode{node: n, ino: next, name: name, parent: parent}
		next++
		byPath[n.Path] = in
		inodes = append(inodes, in)
	}
	for _, in := range inodes[1:] {
		in.parent.children = append(in.parent.children, in)
	}
	// place lost+found by name among root's children; keep order sorted
	sort.SliceStable(root.children, func(i, j int) bool { return root.children[i].name < root.children[j].name })
	for _, in := range inodes {
		in.links = 1
		if in.node.Mode.IsDir() {
			in.links = 2
			for _, c := range in.children {
				if c.node.Mode.IsDir() {
					in.links++
				}
			}
			if in.links > maxLinks {
				in.links = 1 // dir_nlink: "many"
			}
		}
	}
	// allocation order: the tree in path order (lost+found first, after the root)
	return inodes, root, nil
}

// lessPath orders by components so "a/b" sorts right after "a", before "a-b".
func lessPath(a, b string) bool {
	return strings.ReplaceAll(a, "/", "\x00") < strings.ReplaceAll(b, "/", "\x00")
}

func planLayout(p Params, nInodes int) (*fsLayout, error) {
	l := &fsLayout{p: p, bpg: p.BlocksPerGroup}
	l.blocks = uint64(p.Size / BlockSize)
	if l.blocks > 1<<32-1 {
		return nil, fmt.Errorf("ext4: %d bytes is more than this writer supports (16 TiB)", p.Size)
	}
	groups := func() int { return int((l.blocks + uint64(l.bpg) - 1) / uint64(l.bpg)) }
	l.gdtBlocks = uint64((groups()*descSize + BlockSize - 1) / BlockSize)
	// a last group too small for its own metadata is dropped, like mke2fs does
	if last := l.blocks % uint64(l.bpg); last != 0 && last < 64+l.gdtBlocks && groups() > 1 {
		l.blocks -= last
	}
	if l.blocks < 64 {
		return nil, fmt.Errorf("%w: %d bytes is too small for ext4", ErrNoSpace, p.Size)
	}
	l.groups = groups()
	l.gdtBlocks = uint64((l.groups*descSize + BlockSize - 1) / BlockSize)
	const perBlock = BlockSize / inodeSize
	total := uint64(p.Size / p.BytesPerInode)
	need := uint64(nInodes) + firstIno + 16
	total = max(total, need)
	ipg := (total + uint64(l.groups) - 1) / uint64(l.groups)
	ipg = (ipg + perBlock - 1) / perBlock * perBlock
	if ipg > uint64(l.bpg) || ipg > 8*BlockSize {
		return nil, fmt.Errorf("%w: %d files need %d inodes per group, more than %d; make the filesystem larger", ErrNoSpace, nInodes, ipg, min(l.bpg, 8*BlockSize))
	}
	l.ipg = uint32(ipg)
	l.itbPerGroup = ipg / perBlock
	l.used = make([]byte, (l.blocks+7)/8+1)
	// superblock and GDT of group 0, then every group's bitmaps and inode table
	l.mark(0, 1+l.gdtBlocks)
	for g := 1; g < l.groups; g++ {
		if l.isBackupGroup(g) {
			s := uint64(g) * uint64(l.bpg)
			l.mark(s, min(1+l.gdtBlocks, l.blocks-s))
		}
	}
	l.next = 1 + l.gdtBlocks
	for range l.groups {
		b, err := l.allocContig(1)
		if err != nil {
			return nil, fmt.Errorf("%w: no room for metadata in %d bytes", ErrNoSpace, p.Size)
		}
		l.bbitmap = append(l.bbitmap, b)
	}
	for range l.groups {
		b, err := l.allocContig(1)
		if err != nil {
			return nil, fmt.Errorf("%w: no room for metadata in %d bytes", ErrNoSpace, p.Size)
		}
		l.ibitmap = append(l.ibitmap, b)
	}
	for range l.groups {
		b, err := l.allocContig(l.itbPerGroup)
		if err != nil {
			return nil, fmt.Errorf("%w: no room for inode tables in %d bytes", ErrNoSpace, p.Size)
		}
		l.itable = append(l.itable, b)
	}
	return l, nil
}

// journalBlocks is mke2fs's default journal size for a filesystem.
func journalBlocks(blocks uint64) uint64 {
	switch {
	case blocks < 2048:
		return 0
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

func (l *fsLayout) planJournal() error {
	n := journalBlocks(l.blocks)
	if n == 0 {
		return fmt.Errorf("%w: %d blocks is too small for a journal", ErrNoSpace, l.blocks)
	}
	j := &inode{node: &Node{Mode: 0o600, Size: int64(n) * BlockSize}, ino: journalIno, links: 1}
	if err := l.allocExtents(j, n); err != nil {
		return noSpace(err, l.p)
	}
	l.journal = j
	return nil
}

// dirBlocks lays out a directory's entries: ".", "..", then the children.
func dirBlocks(in *inode) []byte {
	parent := in.parent
	if parent == nil {
		parent = in
	}
	type ent struct {
		ino  uint32
		name string
		typ  byte
	}
	ents := []ent{{in.ino, ".", 2}, {parent.ino, "..", 2}}
	for _, c := range in.children {
		ents = append(ents, ent{c.ino, c.name, fileType(c.node.Mode)})
	}
	var out []byte
	block := make([]byte, 0, BlockSize)
	lastOff := -1
	for _, e := range ents {
		size := 8 + (len(e.name)+3)/4*4
		if len(block)+size > BlockSize {
			// stretch the last entry to the end of the block
			binary.LittleEndian.PutUint16(block[lastOff+4:], uint16(BlockSize-lastOff))
			out = append(out, block[:BlockSize]...)
			block = make([]byte, 0, BlockSize)
		}
		lastOff = len(block)
		var h [8]byte
		binary.LittleEndian.PutUint32(h[0:], e.ino)
		binary.LittleEndian.PutUint16(h[4:], uint16(size))
		h[6] = byte(len(e.name))
		h[7] = e.typ
		block = append(block, h[:]...)
		block = append(block, e.name...)
		for len(block)%4 != 0 {
			block = append(block, 0)
		}
	}
	binary.LittleEndian.PutUint16(block[lastOff+4:], uint16(BlockSize-lastOff))
	return append(out, block[:BlockSize]...)
}

func emptyDirBlocks(n int) []byte {
	out := make([]byte, n*BlockSize)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint16(out[i*BlockSize+4:], BlockSize)
	}
	return out
}

func fileType(m fs.FileMode) byte {
	switch {
	case m.IsDir():
		return 2
	case m&fs.ModeSymlink != 0:
		return 7
	}
	return 1
}

func unixMode(m fs.FileMode) uint16 {
	v := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	switch {
	case m.IsDir():
		v |= sIFDIR
	case m&fs.ModeSymlink != 0:
		v |= sIFLNK
	default:
		v |= sIFREG
	}
	return v
}
