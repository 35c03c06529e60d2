package slurm

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// NodeState is a node as slurmctld shows it (`scontrol show node NAME -o`).
// Slurm's placeholders "(null)", "N/A", "None" and "n/a" read as empty.
type NodeState struct {
	Name     string
	Addr     string // NodeAddr
	HostName string // NodeHostName
	// State is the state as printed: the base state and its flags joined
	// by "+", e.g. "IDLE+CLOUD+DRAIN+DYNAMIC_NORM+POWERED_DOWN".
	State string
	Base  string   // "IDLE", "ALLOCATED", "MIXED", "DOWN", "UNKNOWN", ...
	Flags []string // "CLOUD", "DRAIN", "DYNAMIC_NORM", "NOT_RESPONDING", ...
	// Reason is the drain/down reason without Slurm's " [user@time]"
	// suffix; ReasonUser and ReasonTime are that suffix's parts.
	Reason     string
	ReasonUser string
	ReasonTime string

	CPUs           int // CPUTot
	Sockets        int
	CoresPerSocket int
	ThreadsPerCore int
	RealMemoryMiB  int
	Gres           string   // "gpu:h100:8"
	Features       []string // AvailableFeatures
	ActiveFeatures []string
	Partitions     []string
	Comment        string
	Extra          string

	// Fields holds every Key=Value pair as printed, the ones above
	// included.
	Fields map[string]string
}

// Has reports whether the base state or a flag is s ("DRAIN", "IDLE").
func (s NodeState) Has(state string) bool {
	return s.Base == state || slices.Contains(s.Flags, state)
}

// Drained reports whether the node is drained or draining: it takes no new
// jobs.
func (s NodeState) Drained() bool { return s.Has("DRAIN") }

// Dynamic reports whether the node was created with `scontrol create`
// (or `slurmd -Z`) rather than defined in slurm.conf.
func (s NodeState) Dynamic() bool { return s.Has("DYNAMIC_NORM") || s.Has("DYNAMIC_FUTURE") }

// freeText are the fields whose values may hold spaces and '='; scontrol
// prints them last, in this order (22.05 slurm_sprint_node_table).
var freeText = []string{"Reason", "Comment", "Extra"}

var keyRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*=`)

// reasonRE splits Slurm's "text [user@time]".
var reasonRE = regexp.MustCompile(`^(.*?) ?\[([^\[\]@]*)@([^\[\]@]*)\]$`)

// ParseFields splits one line of `scontrol show ... -o` into its Key=Value
// pairs. A value runs to the next " Key=": values of ordinary fields have no
// spaces, so a token without '=' continues the previous value; within the
// free-text fields (Reason, Comment, Extra: printed last) only a later
// free-text key starts a new field, so a reason may hold "key=value".
func ParseFields(line string) (map[string]string, []string, error) {
	line = strings.TrimRight(line, " \r\n")
	if !keyRE.MatchString(line) {
		return nil, nil, errors.New("not a Key=Value line")
	}
	type span struct {
		key        string
		start, end int // value bounds
	}
	var spans []span
	free := -1 // index in freeText of the free-text field being read
	for i := 0; i < len(line); {
		if i == 0 || line[i-1] == ' ' {
			if m := keyRE.FindString(line[i:]); m != "" {
				key := m[:len(m)-1]
				fi := slices.Index(freeText, key)
				if free < 0 || fi > free {
					if len(spans) > 0 {
						spans[len(spans)-1].end = i
					}
					spans = append(spans, span{key: key, start: i + len(m)})
					if fi >= 0 {
						free = fi
					}
					i += len(m)
					continue
				}
			}
		}
		i++
	}
	spans[len(spans)-1].end = len(line)
	fields := make(map[string]string, len(spans))
	order := make([]string, 0, len(spans))
	for _, s := range spans {
		v := strings.TrimRight(line[s.start:s.end], " ")
		if _, dup := fields[s.key]; dup {
			return nil, nil, fmt.Errorf("field %s appears twice", s.key)
		}
		fields[s.key] = v
		order = append(order, s.key)
	}
	return fields, order, nil
}

// ParseNode parses one line of `scontrol show node NAME -o`.
func ParseNode(line string) (NodeState, error) {
	f, _, err := ParseFields(line)
	if err != nil {
		return NodeState{}, fmt.Errorf("parse scontrol node line: %w", err)
	}
	s := NodeState{Fields: f, Name: f["NodeName"], State: f["State"]}
	if s.Name == "" {
		return NodeState{}, errors.New("parse scontrol node line: no NodeName")
	}
	if s.State == "" {
		return NodeState{}, fmt.Errorf("parse scontrol node line for %s: no State", s.Name)
	}
	parts := strings.Split(s.State, "+")
	s.Base, s.Flags = parts[0], parts[1:]
	if s.Base == "" || slices.Contains(s.Flags, "") {
		return NodeState{}, fmt.Errorf("parse scontrol node line for %s: malformed State=%s", s.Name, s.State)
	}
	s.Addr, s.HostName = value(f["NodeAddr"]), value(f["NodeHostName"])
	s.Gres = value(f["Gres"])
	s.Features, s.ActiveFeatures = list(f["AvailableFeatures"]), list(f["ActiveFeatures"])
	s.Partitions = list(f["Partitions"])
	s.Comment, s.Extra = value(f["Comment"]), value(f["Extra"])
	if r := value(f["Reason"]); r != "" {
		if m := reasonRE.FindStringSubmatch(r); m != nil {
			s.Reason, s.ReasonUser, s.ReasonTime = m[1], m[2], m[3]
		} else {
			s.Reason = r
		}
	}
	for _, n := range []struct {
		key string
		dst *int
	}{{"CPUTot", &s.CPUs}, {"Sockets", &s.Sockets}, {"CoresPerSocket", &s.CoresPerSocket},
		{"ThreadsPerCore", &s.ThreadsPerCore}, {"RealMemory", &s.RealMemoryMiB}} {
		v := value(f[n.key])
		if v == "" {
			continue
		}
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 {
			return NodeState{}, fmt.Errorf("parse scontrol node line for %s: %s=%q is not a count", s.Name, n.key, v)
		}
		*n.dst = i
	}
	return s, nil
}

// value maps Slurm's placeholders to "".
func value(v string) string {
	switch v {
	case "(null)", "N/A", "n/a", "None", "n/s":
		return ""
	}
	return v
}

func list(v string) []string {
	v = value(v)
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// gresNames drops what slurmctld appends to a Gres entry once slurmd has
// reported its topology ("gpu:h100:8(S:0-1)") so Gres compare by name,
// type and count.
func gresNames(g string) string {
	var out []string
	depth, cur := 0, strings.Builder{}
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
		}
		cur.Reset()
	}
	for _, r := range value(g) {
		switch {
		case r == '(':
			depth++
		case r == ')':
			depth = max(depth-1, 0)
		case depth > 0:
		case r == ',':
			flush()
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	slices.Sort(out)
	return strings.Join(out, ",")
}
