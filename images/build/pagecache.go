package build

import (
	"io"
	"io/fs"
	"os"
	"sort"
)

// pageCache is a write-back cache in front of the image file for go-diskfs
// (GPT and the FAT32 ESP; the ext4 root is written by images/ext4). go-diskfs
// writes FAT metadata a few bytes at a time and re-reads it constantly;
// caching 64 KiB pages turns those calls into memory copies, and large
// content writes go straight to the file.
type pageCache struct {
	f     *os.File
	pages map[int64][]byte
	dirty map[int64]bool
	off   int64
}

const (
	pageSize    = 64 << 10
	directWrite = 1 << 20   // writes this large bypass the cache
	maxCached   = 256 << 20 // flush and drop beyond this
)

func newPageCache(f *os.File) *pageCache {
	return &pageCache{f: f, pages: map[int64][]byte{}, dirty: map[int64]bool{}}
}

func (c *pageCache) Stat() (fs.FileInfo, error) { return c.f.Stat() }

func (c *pageCache) page(i int64, fill bool) ([]byte, error) {
	if p, ok := c.pages[i]; ok {
		return p, nil
	}
	if int64(len(c.pages))*pageSize >= maxCached {
		if err := c.Flush(); err != nil {
			return nil, err
		}
		c.pages = map[int64][]byte{}
	}
	p := make([]byte, pageSize)
	if fill {
		n, err := c.f.ReadAt(p, i*pageSize)
		if err != nil && err != io.EOF {
			return nil, err
		}
		clear(p[n:])
	}
	c.pages[i] = p
	return p, nil
}

func (c *pageCache) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		o := off + int64(n)
		i, in := o/pageSize, o%pageSize
		pg, err := c.page(i, true)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], pg[in:])
	}
	return n, nil
}

func (c *pageCache) WriteAt(p []byte, off int64) (int, error) {
	if len(p) >= directWrite {
		if _, err := c.f.WriteAt(p, off); err != nil {
			return 0, err
		}
		// keep cached pages that overlap consistent
		for i := off / pageSize; i <= (off+int64(len(p))-1)/pageSize; i++ {
			if pg, ok := c.pages[i]; ok {
				lo := max(off, i*pageSize)
				hi := min(off+int64(len(p)), (i+1)*pageSize)
				copy(pg[lo-i*pageSize:], p[lo-off:hi-off])
			}
		}
		return len(p), nil
	}
	n := 0
	for n < len(p) {
		o := off + int64(n)
		i, in := o/pageSize, o%pageSize
		full := in == 0 && len(p)-n >= pageSize
		pg, err := c.page(i, !full)
		if err != nil {
			return n, err
		}
		n += copy(pg[in:], p[n:])
		c.dirty[i] = true
	}
	return n, nil
}

// Flush writes the dirty pages, coalescing neighbours.
func (c *pageCache) Flush() error {
	idx := make([]int64, 0, len(c.dirty))
	for i := range c.dirty {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	for s := 0; s < len(idx); {
		e := s
		for e+1 < len(idx) && idx[e+1] == idx[e]+1 && e-s < 255 {
			e++
		}
		buf := make([]byte, 0, (e-s+1)*pageSize)
		for k := s; k <= e; k++ {
			buf = append(buf, c.pages[idx[k]]...)
		}
		if _, err := c.f.WriteAt(buf, idx[s]*pageSize); err != nil {
			return err
		}
		s = e + 1
	}
	c.dirty = map[int64]bool{}
	return nil
}

func (c *pageCache) Read(p []byte) (int, error) {
	n, err := c.ReadAt(p, c.off)
	c.off += int64(n)
	return n, err
}

func (c *pageCache) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		c.off = offset
	case io.SeekCurrent:
		c.off += offset
	case io.SeekEnd:
		fi, err := c.f.Stat()
		if err != nil {
			return 0, err
		}
		c.off = fi.Size() + offset
	}
	return c.off, nil
}

// Drop flushes and forgets every page, before the file is changed directly.
func (c *pageCache) Drop() error {
	if err := c.Flush(); err != nil {
		return err
	}
	c.pages = map[int64][]byte{}
	return nil
}

// Close flushes; the caller closes the file.
func (c *pageCache) Close() error { return c.Flush() }
