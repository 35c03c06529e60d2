// Package firstboot keeps what the installed OS's agent needs for its one
// first-boot check-in: the controller's URL, the one-time first-boot token
// from the image task, and the CA. The netboot agent saves it right after
// the image is written and verified; `rackstrap-agent firstboot --state`
// loads it, checks in, and saves it again with the session instead of the
// spent token, so a reboot during burn-in carries on with the session.
//
// The record is a JSON file (mode 0600), or, when the path is a block
// device, a 64 KiB block 1 MiB before the end of the device:
//
//	"RACKSTRAP-FIRSTBOOT 1\n" + JSON + "\n", zero-padded
//
// which lies past the image (the netboot agent cannot mount the image's
// filesystems), clear of the backup GPT in the last 33 sectors, and
// outside the last partition, which the imaging grows only to 1 MiB before
// the disk's end (imaging.GrowReserve).
package firstboot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/atomicfile"
)

// Record is the first-boot state.
type Record struct {
	Version int `json:"version"`
	// Server is the controller's base URL.
	Server string `json:"server"`
	// Token is the one-time first-boot enrolment token; emptied once spent.
	Token string `json:"firstBootToken,omitempty"`
	// CA is the PEM bundle that signs the controller's certificate ("": the
	// system roots).
	CA string `json:"ca,omitempty"`
	// ImageSHA256 is the image the record was written with.
	ImageSHA256 string    `json:"imageSHA256,omitempty"`
	WrittenAt   time.Time `json:"writtenAt"`
	// Node, Session and CheckedInAt are set after the first-boot check-in.
	Node        string    `json:"node,omitempty"`
	Session     string    `json:"session,omitempty"`
	CheckedInAt time.Time `json:"checkedInAt,omitzero"`
}

// Device layout.
const (
	Magic = "RACKSTRAP-FIRSTBOOT 1\n"
	// TailOffset is how far before the device's end the block starts.
	TailOffset = 1 << 20
	// BlockSize is the block's size.
	BlockSize = 64 << 10
)

// Check says what a record lacks for a check-in.
func (r Record) Check() error {
	if r.Server == "" {
		return errors.New("first-boot record has no server")
	}
	if r.Token == "" && r.Session == "" {
		return errors.New("first-boot record has neither a first-boot token nor a session")
	}
	return nil
}

// Save writes the record to path: a file, or the block at the tail of a
// block device. reserve is how many bytes at the start of the device the
// record must not touch (the image).
func Save(path string, r Record, reserve int64) error {
	r.Version = 1
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err == nil && isBlockDevice(fi) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("first-boot record: %w", err)
		}
		defer f.Close()
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return fmt.Errorf("first-boot record: size of %s: %w", path, err)
		}
		if err := saveTail(f, size, data, reserve); err != nil {
			return fmt.Errorf("first-boot record on %s: %w", path, err)
		}
		return f.Sync()
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("first-boot record: %w", err)
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

func saveTail(w io.WriterAt, size int64, data []byte, reserve int64) error {
	off := size - TailOffset
	if off < reserve {
		return fmt.Errorf("no room past the image for the record: the disk holds %d bytes, the image %d, the record needs 1 MiB after it", size, reserve)
	}
	block := make([]byte, BlockSize)
	n := copy(block, Magic)
	if n+len(data)+1 > BlockSize {
		return fmt.Errorf("record of %d bytes does not fit in %d", len(data), BlockSize)
	}
	n += copy(block[n:], data)
	block[n] = '\n'
	_, err := w.WriteAt(block, off)
	return err
}

// Load reads the record at path (a file or a block device).
func Load(path string) (Record, error) {
	var r Record
	fi, err := os.Stat(path)
	if err != nil {
		return r, fmt.Errorf("first-boot record: %w", err)
	}
	var data []byte
	if isBlockDevice(fi) {
		f, err := os.Open(path)
		if err != nil {
			return r, fmt.Errorf("first-boot record: %w", err)
		}
		defer f.Close()
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return r, fmt.Errorf("first-boot record: size of %s: %w", path, err)
		}
		if data, err = loadTail(f, size); err != nil {
			return r, fmt.Errorf("first-boot record on %s: %w", path, err)
		}
	} else if data, err = os.ReadFile(path); err != nil {
		return r, fmt.Errorf("first-boot record: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("first-boot record %s is not valid: %w", path, err)
	}
	if r.Version != 1 {
		return r, fmt.Errorf("first-boot record %s has version %d; this agent reads version 1", path, r.Version)
	}
	return r, r.Check()
}

func loadTail(rd io.ReaderAt, size int64) ([]byte, error) {
	off := size - TailOffset
	if off < 0 {
		return nil, errors.New("the device is too small to hold a record")
	}
	block := make([]byte, BlockSize)
	if _, err := rd.ReadAt(block, off); err != nil {
		return nil, err
	}
	rest, ok := bytes.CutPrefix(block, []byte(Magic))
	if !ok {
		return nil, fmt.Errorf("no record (no %q at byte %d)", Magic[:len(Magic)-1], off)
	}
	data, _, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return nil, errors.New("record is not terminated")
	}
	return data, nil
}

func isBlockDevice(fi fs.FileInfo) bool {
	return fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0
}
