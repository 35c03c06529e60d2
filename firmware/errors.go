package firmware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/rackstrap/rackstrap/bmc"
)

// Failure classes of a firmware operation, beside bmc's transport classes
// (bmc.ClassUnreachable, bmc.ClassAuth, bmc.ClassProtocol, bmc.ClassBMCError,
// bmc.ClassUnsupported, bmc.ClassCertChanged).
const (
	ClassPackageInvalid   = "firmware-package-invalid"    // unreadable package, wrong sha256, bad or missing signature
	ClassComponentMissing = "firmware-component-missing"  // the BMC does not list the component
	ClassTaskFailed       = "firmware-task-failed"        // the BMC's update task ended in failure
	ClassTaskTimeout      = "firmware-task-timeout"       // the update task did not finish within the deadline
	ClassVersionMismatch  = "firmware-version-unverified" // after the update the component reports another version
	ClassBusy             = "firmware-bmc-busy"           // another update task runs on the BMC and did not finish in time
)

// Sentinels for errors.Is; an *Error matches the sentinel of its class.
var (
	ErrPackageInvalid   = errors.New(ClassPackageInvalid)
	ErrComponentMissing = errors.New(ClassComponentMissing)
	ErrTaskFailed       = errors.New(ClassTaskFailed)
	ErrTaskTimeout      = errors.New(ClassTaskTimeout)
	ErrVersionMismatch  = errors.New(ClassVersionMismatch)
	ErrBusy             = errors.New(ClassBusy)
)

// Error is a failed firmware operation on one BMC.
type Error struct {
	Op    string // "update BMC", "verify package"
	Host  string // the endpoint, without credentials
	Class string
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Host != "" {
		fmt.Fprintf(&b, "bmc %s: ", e.Host)
	}
	fmt.Fprintf(&b, "%s: %v", e.Op, e.Err)
	if r := remedy(e.Class); r != "" {
		b.WriteString("; ")
		b.WriteString(r)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// FailureClass is one of the Class constants.
func (e *Error) FailureClass() string { return e.Class }

// Is matches the sentinel of the error's class.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrPackageInvalid:
		return e.Class == ClassPackageInvalid
	case ErrComponentMissing:
		return e.Class == ClassComponentMissing
	case ErrTaskFailed:
		return e.Class == ClassTaskFailed
	case ErrTaskTimeout:
		return e.Class == ClassTaskTimeout
	case ErrVersionMismatch:
		return e.Class == ClassVersionMismatch
	case ErrBusy:
		return e.Class == ClassBusy
	}
	return false
}

func remedy(class string) string {
	switch class {
	case ClassPackageInvalid:
		return "nothing was sent to the BMC; check the package file against the baseline's sha256 and signature, or fix the baseline"
	case ClassComponentMissing:
		return "check the baseline's component id or name pattern against 'rackstrap firmware inventory'"
	case ClassTaskFailed:
		return "read the BMC's task messages and event log; the component keeps its old firmware unless the BMC says otherwise"
	case ClassTaskTimeout:
		return "the update may still be running: applying again with the same key waits for the BMC's task instead of flashing twice; do not power-cycle the machine meanwhile"
	case ClassVersionMismatch:
		return "the BMC said the update succeeded but reports another version: check that the package is the one the baseline means, and whether the component needs a reset the baseline does not name"
	case ClassBusy:
		return "wait for the BMC's running update task to finish, then apply again"
	}
	return ""
}

func fwErr(op, host, class string, err error) error {
	return &Error{Op: op, Host: host, Class: class, Err: err}
}

// httpError is a Redfish service answering with an error status.
type httpError struct {
	Method, Path string
	Status       int
	Message      string // from the Redfish error body, when there is one
}

func (e *httpError) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d", e.Method, e.Path, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Protocol errors of the client itself.
var (
	errBodyTooLarge = errors.New("reply body exceeds the size limit")
	errContentType  = errors.New("reply is not JSON")
	errBadLink      = errors.New("bad resource link")
	errRedirect     = errors.New("too many or cross-host redirects")
)

// classify maps a transport or protocol error onto a bmc failure class.
func classify(err error) string {
	var he *httpError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var cert *bmc.CertError
	var ne net.Error
	switch {
	case errors.As(err, &cert):
		return bmc.ClassCertChanged
	case errors.Is(err, bmc.ErrUnsupported):
		return bmc.ClassUnsupported
	case errors.As(err, &he):
		switch he.Status {
		case 401, 403:
			return bmc.ClassAuth
		case 404, 405, 501:
			return bmc.ClassUnsupported
		}
		return bmc.ClassBMCError
	case errors.Is(err, errBodyTooLarge), errors.Is(err, errContentType), errors.Is(err, errBadLink),
		errors.Is(err, errRedirect), errors.As(err, &syn), errors.As(err, &typ), errors.Is(err, io.ErrUnexpectedEOF):
		return bmc.ClassProtocol
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.EOF), errors.As(err, &ne):
		return bmc.ClassUnreachable
	}
	return bmc.ClassBMCError
}

// wrapBMC turns a raw transport error into a *bmc.Error or *bmc.AuthError.
// Errors that already carry a class are returned as they are.
func wrapBMC(op string, ep bmc.Endpoint, err error) error {
	if err == nil {
		return nil
	}
	var fc interface{ FailureClass() string }
	if errors.As(err, &fc) {
		return err
	}
	class := classify(err)
	if class == bmc.ClassAuth {
		return &bmc.AuthError{Op: op, Host: ep.String(), User: ep.Username, Err: err}
	}
	return &bmc.Error{Op: op, Host: ep.String(), Class: class, Err: err}
}

// transient says whether err may go away by itself (the BMC rebooting,
// busy or briefly unreachable), so that polling goes on.
func transient(err error) bool {
	switch bmc.FailureClass(err) {
	case bmc.ClassUnreachable:
		return true
	case bmc.ClassBMCError:
		var he *httpError
		return errors.As(err, &he) && he.Status >= 500
	}
	return false
}
