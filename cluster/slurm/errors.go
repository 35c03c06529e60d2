package slurm

import (
	"errors"
	"fmt"
	"strings"
)

// ClassHandOffFailed is the failure class of every error of this package,
// the controller's "handoff-failed".
const ClassHandOffFailed = "handoff-failed"

// Sentinels for errors.Is; an *Error matches the sentinel of its Kind.
var (
	// ErrNotFound: slurmctld does not know (or does not show) the node.
	ErrNotFound = errors.New("node not found")
	// ErrUnreachable: slurmctld did not answer (not running, wrong
	// host/port in slurm.conf).
	ErrUnreachable = errors.New("slurmctld unreachable")
	// ErrAuth: munge authentication failed.
	ErrAuth = errors.New("munge authentication failed")
	// ErrPermission: the caller lacks Slurm admin rights.
	ErrPermission = errors.New("permission denied")
	// ErrConfig: scontrol could not read slurm.conf.
	ErrConfig = errors.New("slurm configuration unavailable")
	// ErrTimeout: scontrol did not finish within Config.Timeout.
	ErrTimeout = errors.New("scontrol timed out")
	// ErrNotInstalled: the scontrol (or ip) binary is missing.
	ErrNotInstalled = errors.New("scontrol not installed")
	// ErrInvalid: the node's facts cannot be given to Slurm as they are.
	ErrInvalid = errors.New("invalid node")
	// ErrNotApplied: scontrol succeeded but slurmctld does not show the
	// change (22.05 answers some refused creates with exit status 0).
	ErrNotApplied = errors.New("change not applied")
	// ErrConflict: the node exists in a form Rackstrap must not change
	// (a static node from slurm.conf).
	ErrConflict = errors.New("conflicting node")
)

// Error is a failed Slurm operation. Its message carries what scontrol
// printed and ends with the remedy.
type Error struct {
	Op     string // "register", "drain", "resume", "remove", "state"
	Node   string
	Cmd    string // the scontrol command line, when one ran
	Output string // scontrol's stderr (and stdout where it printed the error there), trimmed
	Kind   error  // one of the sentinels, or nil
	Err    error
	Remedy string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "slurm %s: %s", e.Node, e.Op)
	if e.Cmd != "" {
		fmt.Fprintf(&b, ": %s", e.Cmd)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Output != "" {
		fmt.Fprintf(&b, ": %s", oneLine(e.Output))
	}
	if e.Remedy != "" {
		fmt.Fprintf(&b, "; %s", e.Remedy)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinel of the error's kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// FailureClass is ClassHandOffFailed: the controller records a node whose
// hand-off or release failed under it.
func (e *Error) FailureClass() string { return ClassHandOffFailed }

func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " | ")
}

// classify names the kind and remedy of a failed scontrol run from what it
// printed.
func (c *Cluster) classify(output string) (error, string) {
	o := strings.ToLower(output)
	conf := c.cfg.Conf
	if conf == "" {
		conf = "slurm.conf"
	}
	switch {
	case strings.Contains(o, "cannot open network namespace"):
		return ErrConfig, fmt.Sprintf("create network namespace %s or leave Rackstrap's Slurm netns setting empty", c.cfg.Netns)
	case strings.Contains(o, "exec of") && strings.Contains(o, "failed"):
		return ErrNotInstalled, "install Debian's slurm-client on the controller host, or set the scontrol path"
	case strings.Contains(o, "unable to contact slurm controller"), strings.Contains(o, "connect failure"),
		strings.Contains(o, "connection refused"):
		return ErrUnreachable, fmt.Sprintf("start slurmctld, or fix SlurmctldHost/SlurmctldPort in %s; 'scontrol ping' must say UP", conf)
	case strings.Contains(o, "munge"), strings.Contains(o, "authentication"):
		return ErrAuth, fmt.Sprintf("munged must run on this host with the cluster's munge key (check 'munge -n | unmunge' and AuthInfo in %s)", conf)
	case strings.Contains(o, "could not establish a configuration source"), strings.Contains(o, "unable to process configuration file"),
		strings.Contains(o, "fetch_config"), strings.Contains(o, "slurm.conf"):
		return ErrConfig, "point Rackstrap's Slurm configuration path (SLURM_CONF) at the cluster's slurm.conf"
	case strings.Contains(o, "access/permission denied"), strings.Contains(o, "permission denied"), strings.Contains(o, "invalid user id"):
		return ErrPermission, "creating, updating and deleting nodes needs Slurm admin rights: run Rackstrap as root or SlurmUser, or grant them with 'sacctmgr modify user NAME set adminlevel=admin'"
	case strings.Contains(o, "invalid node name specified"), strings.Contains(o, "not found"):
		return ErrNotFound, notFoundRemedy
	}
	return nil, "slurmctld's log (SlurmctldLogFile in " + conf + ") says why"
}

const notFoundRemedy = "hand the node off first; if it was registered, slurm.conf needs PrivateData=cloud, without which slurmctld hides powered-down CLOUD nodes"
