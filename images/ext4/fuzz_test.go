package ext4

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"testing"
)

// FuzzWrite feeds the writer arbitrary trees and sizes: it must refuse or
// write, never panic, and what it writes starts with a valid superblock
// whose counts add up.
func FuzzWrite(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7}, uint8(8), uint8(0))
	f.Add([]byte("dir/file/link/long-symlink-target-that-is-longer-than-sixty-bytes-for-sure"), uint8(2), uint8(3))
	f.Add(make([]byte, 300), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, sizeMiB uint8, ext uint8) {
		if len(data) > 2000 {
			return
		}
		size := int64(sizeMiB%4+1) << 20
		nodes := []Node{{Path: ".", Mode: fs.ModeDir | 0o755}}
		dirs := []string{"."}
		for i := 0; i+2 < len(data); i += 3 {
			kind, pick, n := data[i]%4, int(data[i+1]), int(data[i+2])
			parent := dirs[pick%len(dirs)]
			name := fmt.Sprintf("n%d", i)
			if n%7 == 0 {
				name = string(rune('a'+n%26)) + name
			}
			p := name
			if parent != "." {
				p = parent + "/" + name
			}
			switch kind {
			case 0:
				nodes = append(nodes, Node{Path: p, Mode: fs.ModeDir | fs.FileMode(n)&0o777})
				dirs = append(dirs, p)
			case 1:
				nodes = append(nodes, Node{Path: p, Mode: fs.FileMode(n) & 0o777, Size: int64(n) * 997, UID: uint32(n) << 12})
			case 2:
				tgt := make([]byte, n%200+1)
				for k := range tgt {
					tgt[k] = 'x'
				}
				nodes = append(nodes, Node{Path: p, Mode: fs.ModeSymlink | 0o777, Target: string(tgt)})
			default:
				nodes = append(nodes, Node{Path: p, Mode: 0o644})
			}
		}
		d := &orderedDisk{memDisk: memDisk{make([]byte, size)}}
		st, err := Write(context.Background(), d, nodes, Params{Size: size, BlocksPerGroup: 64 << (ext % 4), maxExtent: uint32(ext%5) + 1, Journal: ext%2 == 0})
		if err != nil {
			return
		}
		sb := d.b[1024:2048]
		if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
			t.Fatal("no superblock magic")
		}
		if free := binary.LittleEndian.Uint32(sb[0x0C:]); uint64(free) != st.FreeBlocks || st.FreeBlocks > st.Blocks {
			t.Fatalf("free blocks %d in the superblock, %d in stats of %d", free, st.FreeBlocks, st.Blocks)
		}
		if used := st.Inodes - st.FreeInodes; int(used) < len(nodes)+firstIno-1 {
			t.Fatalf("%d inodes used for %d nodes", used, len(nodes))
		}
	})
}
