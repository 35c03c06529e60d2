package bmc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/stmcginnis/gofish/common"
)

// Failure classes: why an operation on a BMC failed, in words the
// controller records and a technician acts on.
const (
	ClassUnreachable      = "bmc-unreachable"       // no connection, or no answer within the deadline
	ClassAuth             = "bmc-auth-failed"       // the BMC refused the credentials
	ClassProtocol         = "bmc-protocol-error"    // the answer was not Redfish/IPMI as expected (bad JSON, content type, body too large, redirects)
	ClassBMCError         = "bmc-error"             // the BMC answered with an error (HTTP 4xx/5xx, IPMI completion code)
	ClassStateUnconfirmed = "bmc-state-unconfirmed" // the BMC accepted the request but never reported the wanted state
	ClassUnsupported      = "bmc-unsupported"       // the BMC or protocol has no such operation
	ClassCertChanged      = "bmc-cert-changed"      // the TLS certificate is not the pinned one
)

// Sentinels for errors.Is; an *Error matches the sentinel of its class.
var (
	ErrUnreachable      = errors.New(ClassUnreachable)
	ErrProtocol         = errors.New(ClassProtocol)
	ErrBMC              = errors.New(ClassBMCError)
	ErrStateUnconfirmed = errors.New(ClassStateUnconfirmed)
	ErrUnsupported      = errors.New(ClassUnsupported)
)

// Error is a failed BMC operation.
type Error struct {
	Op    string // "power on", "inventory", ...
	Host  string // the endpoint, without credentials
	Class string
	Err   error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("bmc %s: %s: %v", e.Host, e.Op, e.Err)
	if r := remedy(e.Class); r != "" {
		msg += "; " + r
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// FailureClass is one of the Class constants.
func (e *Error) FailureClass() string { return e.Class }

// Is matches the sentinel of the error's class.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnreachable:
		return e.Class == ClassUnreachable
	case ErrProtocol:
		return e.Class == ClassProtocol
	case ErrBMC:
		return e.Class == ClassBMCError
	case ErrStateUnconfirmed:
		return e.Class == ClassStateUnconfirmed
	case ErrUnsupported:
		return e.Class == ClassUnsupported
	}
	return false
}

// AuthError is a BMC refusing the credentials.
type AuthError struct {
	Op   string
	Host string
	User string
	Err  error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("bmc %s: %s: credentials for user %q refused: %v; %s", e.Host, e.Op, e.User, e.Err, remedy(ClassAuth))
}

func (e *AuthError) Unwrap() error { return e.Err }

// FailureClass is ClassAuth.
func (e *AuthError) FailureClass() string { return ClassAuth }

// CertError is a BMC presenting a certificate other than the pinned one,
// or one the operator's CA bundle does not vouch for.
type CertError struct {
	Want, Got string // hex SHA-256 fingerprints; Want is "" without a pin
	// CA: the certificate was checked against the CA bundle
	// (Config.RootCAs); ChainErr is why it did not verify, nil when it did.
	CA       bool
	ChainErr error
}

func (e *CertError) Error() string {
	switch {
	case e.Want == "":
		return fmt.Sprintf("TLS certificate sha256:%s is not trusted by the CA bundle: %v", e.Got, e.ChainErr)
	case e.CA && e.ChainErr == nil:
		return fmt.Sprintf("TLS certificate changed: fingerprint sha256:%s, pinned sha256:%s (the new certificate is signed by the CA bundle)", e.Got, e.Want)
	case e.CA:
		return fmt.Sprintf("TLS certificate changed: fingerprint sha256:%s, pinned sha256:%s, and the CA bundle does not vouch for it: %v", e.Got, e.Want, e.ChainErr)
	}
	return fmt.Sprintf("TLS certificate changed: fingerprint sha256:%s, pinned sha256:%s", e.Got, e.Want)
}

// FailureClass returns the failure class of err: the class of the first
// error in its chain with a FailureClass method, or "" for nil.
func FailureClass(err error) string {
	if err == nil {
		return ""
	}
	var fc interface{ FailureClass() string }
	if errors.As(err, &fc) {
		return fc.FailureClass()
	}
	return classify(err)
}

func remedy(class string) string {
	switch class {
	case ClassUnreachable:
		return "check that the BMC is powered, cabled and on the BMC network, and its address and port"
	case ClassAuth:
		return "check the BMC credentials in rack.yaml or run 'rackstrap bmc creds set'"
	case ClassProtocol:
		return "the BMC's answer was not valid Redfish/IPMI; check the address points at a BMC and consider a BMC firmware update"
	case ClassStateUnconfirmed:
		return "the BMC accepted the request but did not reach the state; check the BMC's event log, or reset the BMC"
	case ClassCertChanged:
		return "if the BMC's certificate was replaced on purpose, re-pin it with 'rackstrap bmc trust' (with a CA bundle: have the CA sign the BMC's certificate, for the address it is reached at)"
	}
	return ""
}

// errBodyTooLarge, errRedirect and errContentType are protocol errors of
// our own transport.
var (
	errBodyTooLarge = errors.New("reply body exceeds the size limit")
	errRedirect     = errors.New("too many or cross-host redirects")
	errContentType  = errors.New("reply is not JSON")
	errForeignHost  = errors.New("request to a host other than the BMC")
)

// classify maps an error from bmclib, gofish, net/http or ipmitool onto a
// failure class.
func classify(err error) string {
	var ge *common.Error
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var ne net.Error
	var cert *CertError
	switch {
	case errors.As(err, &cert):
		return ClassCertChanged
	case errors.Is(err, errSessionRefused):
		return ClassAuth
	case errors.Is(err, ErrStateUnconfirmed):
		return ClassStateUnconfirmed
	case errors.Is(err, ErrUnsupported):
		return ClassUnsupported
	case errors.Is(err, ErrProtocol):
		return ClassProtocol
	case errors.As(err, &ge) && ge.HTTPReturnedStatusCode != 0:
		switch ge.HTTPReturnedStatusCode {
		case 401, 403:
			return ClassAuth
		}
		return ClassBMCError
	case errors.Is(err, errBodyTooLarge), errors.Is(err, errRedirect), errors.Is(err, errContentType), errors.Is(err, errForeignHost),
		strings.Contains(err.Error(), "response headers exceeded"), // net/http's MaxResponseHeaderBytes, inside a *url.Error
		errors.As(err, &syn), errors.As(err, &typ), errors.Is(err, io.ErrUnexpectedEOF):
		return ClassProtocol
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.EOF), errors.As(err, &ne):
		return ClassUnreachable
	}
	// ipmitool and some bmclib paths only leave text.
	s := strings.ToLower(err.Error())
	switch {
	case strings.Contains(s, "unauthorized name"), strings.Contains(s, "rakp 2 hmac is invalid"),
		strings.Contains(s, "invalid user name"), strings.Contains(s, "insufficient privilege"),
		strings.Contains(s, "401"), strings.Contains(s, "unauthorized"):
		return ClassAuth
	case strings.Contains(s, "unable to establish"), strings.Contains(s, "no response"),
		strings.Contains(s, "connection refused"), strings.Contains(s, "connection reset"),
		strings.Contains(s, "i/o timeout"), strings.Contains(s, "deadline exceeded"):
		return ClassUnreachable
	case strings.Contains(s, "does not support"), strings.Contains(s, "not a supported media type"),
		strings.Contains(s, "no virtual media found"):
		return ClassUnsupported
	case strings.Contains(s, errBodyTooLarge.Error()), strings.Contains(s, errRedirect.Error()), strings.Contains(s, errForeignHost.Error()),
		strings.Contains(s, errContentType.Error()), strings.Contains(s, "invalid character"),
		strings.Contains(s, "unexpected end of json"), strings.Contains(s, "unexpected eof"):
		// gofish flattens collection errors into text.
		return ClassProtocol
	}
	return ClassBMCError
}

// wrap turns a raw error into an *Error or *AuthError.
func wrap(op string, ep Endpoint, err error) error {
	if err == nil {
		return nil
	}
	var ae *AuthError
	var e *Error
	if errors.As(err, &ae) || errors.As(err, &e) {
		return err
	}
	class := classify(err)
	if class == ClassAuth {
		return &AuthError{Op: op, Host: ep.String(), User: ep.Username, Err: err}
	}
	return &Error{Op: op, Host: ep.String(), Class: class, Err: err}
}
