package dhcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FileStore is a LeaseStore on an append-only JSON-lines journal: each
// Commit appends its batch with one write and one fsync. Load replays the
// journal (the last line of an address wins, a torn last line is ignored),
// then rewrites it compacted, keeping only bound and declined leases; Commit
// compacts the same way once the journal holds four times more lines than
// addresses, so renewals do not grow it without bound.
type FileStore struct {
	path string
	now  func() time.Time

	mu     sync.Mutex
	f      *os.File
	latest map[string]Lease // by IP: what a compaction keeps
	lines  int              // lines in the journal file
}

var _ LeaseStore = (*FileStore)(nil)

// NewFileStore returns a journal at path; the file is created on first use.
func NewFileStore(path string) *FileStore {
	return &FileStore{path: path, now: time.Now}
}

// Load replays and compacts the journal.
func (s *FileStore) Load(ctx context.Context) ([]Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load leases: %w", err)
	}
	latest := map[string]Lease{}
	for i, line := range bytes.Split(data, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var l Lease
		if err := json.Unmarshal(line, &l); err != nil || !l.IP.IsValid() {
			if i == bytes.Count(data, []byte{'\n'}) {
				break // torn final write from a crash: never acknowledged
			}
			return nil, fmt.Errorf("load leases: %s line %d: %v; move the file aside to start with no leases", s.path, i+1, err)
		}
		latest[l.IP.String()] = l
	}
	s.latest = latest
	out, err := s.compact()
	if err != nil {
		return nil, err
	}
	return out, nil
}

// compact rewrites the journal with the live leases only.
func (s *FileStore) compact() ([]Lease, error) {
	now := s.now()
	var out []Lease
	for k, l := range s.latest {
		if l.State == Bound || (l.State == Declined && now.Before(l.Expires)) {
			out = append(out, l)
		} else {
			delete(s.latest, k)
		}
	}
	if err := s.rewrite(out); err != nil {
		return nil, err
	}
	s.lines = len(out)
	return out, nil
}

func (s *FileStore) rewrite(ls []Lease) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, l := range ls {
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("compact leases: %w", err)
		}
	}
	tmp := s.path + ".tmp"
	if err := writeSync(tmp, b.Bytes()); err != nil {
		return fmt.Errorf("compact leases: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("compact leases: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	return nil
}

func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// Commit appends the batch and fsyncs it.
func (s *FileStore) Commit(ctx context.Context, ls []Lease) error {
	if len(ls) == 0 {
		return nil
	}
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	enc := json.NewEncoder(w)
	for _, l := range ls {
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("commit leases: %w", err)
		}
	}
	w.Flush()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("commit leases: %w", err)
		}
		s.f = f
	}
	if _, err := s.f.Write(b.Bytes()); err != nil {
		return fmt.Errorf("commit leases: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("commit leases: %w", err)
	}
	if s.latest == nil {
		s.latest = map[string]Lease{}
	}
	for _, l := range ls {
		s.latest[l.IP.String()] = l
	}
	s.lines += len(ls)
	if s.lines > 4*len(s.latest)+1024 {
		// The batch is already durable; a failed compaction leaves the
		// longer journal, which is still correct.
		if _, err := s.compact(); err != nil {
			return nil
		}
	}
	return nil
}

// Close closes the journal file.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// MemStore is a LeaseStore in memory, for tests and the demo's throwaway
// runs.
type MemStore struct {
	mu     sync.Mutex
	leases map[string]Lease
	// Commits counts Commit calls (batches).
	Commits int
}

var _ LeaseStore = (*MemStore)(nil)

// Load returns the committed leases.
func (m *MemStore) Load(context.Context) ([]Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Lease, 0, len(m.leases))
	for _, l := range m.leases {
		out = append(out, l)
	}
	return out, nil
}

// Commit stores the batch.
func (m *MemStore) Commit(_ context.Context, ls []Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leases == nil {
		m.leases = map[string]Lease{}
	}
	for _, l := range ls {
		m.leases[l.IP.String()] = l
	}
	m.Commits++
	return nil
}
