package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/atomicfile"
)

// Record is what the state file holds about one task key.
type Record struct {
	Kind    string    `json:"kind"`
	Started time.Time `json:"started"`
	// Runs counts the runs of this key (a restart mid-task runs it again).
	Runs int `json:"runs"`
	// Done: the task ended and Outcome is its result.
	Done    bool    `json:"done,omitempty"`
	Outcome Outcome `json:"outcome,omitzero"`
	// Reported: the controller recorded the outcome.
	Reported bool `json:"reported,omitempty"`
}

// State is the agent's record of task keys, kept in a small JSON file
// (written to a temporary file and renamed, so a crash leaves the old or the
// new state, never half of one).
type State struct {
	path  string
	mu    sync.Mutex
	tasks map[string]*Record
}

type stateFile struct {
	Version int                `json:"version"`
	Tasks   map[string]*Record `json:"tasks"`
}

// LoadState reads the state file at path; a missing file is an empty state,
// and path "" keeps the state in memory only.
func LoadState(path string) (*State, error) {
	s := &State{path: path, tasks: map[string]*Record{}}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tasks: read state file: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tasks: state file %s is not valid (%v); remove it to start afresh (tasks that ended will run again)", path, err)
	}
	for k, r := range f.Tasks {
		if r != nil {
			s.tasks[k] = r
		}
	}
	return s, nil
}

// Get returns a copy of the record of key.
func (s *State) Get(key string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.tasks[key]
	if !ok {
		return Record{}, false
	}
	return *r, true
}

// Keys lists the keys in the state, sorted.
func (s *State) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.tasks))
	for k := range s.tasks {
		keys = append(keys, k)
	}
	return sorted(keys)
}

// Start records that a run of key begins.
func (s *State) Start(key, kind string) error {
	return s.update(key, func(r *Record) {
		r.Kind = kind
		r.Started = time.Now().UTC()
		r.Runs++
	})
}

// Finish records the outcome of key.
func (s *State) Finish(key string, out Outcome) error {
	return s.update(key, func(r *Record) {
		r.Done = true
		r.Outcome = out
	})
}

// Reported records that the controller has the outcome of key.
func (s *State) Reported(key string) error {
	return s.update(key, func(r *Record) { r.Reported = true })
}

func (s *State) update(key string, f func(*Record)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.tasks[key]
	if r == nil {
		r = &Record{}
		s.tasks[key] = r
	}
	f(r)
	return s.saveLocked()
}

func (s *State) saveLocked() error {
	if s.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(stateFile{Version: 1, Tasks: s.tasks}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, append(data, '\n'), 0o600)
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}
