package firmware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"

	"github.com/rackstrap/rackstrap/bmc"
)

// Transfer is how a package reaches the BMC.
type Transfer string

const (
	// TransferAuto pushes the package when the BMC's UpdateService
	// advertises MultipartHttpPushUri, and uses SimpleUpdate otherwise.
	TransferAuto Transfer = ""
	// TransferSimple: UpdateService.SimpleUpdate; the BMC fetches ImageURI.
	TransferSimple Transfer = "simple-update"
	// TransferPush: the package's bytes are the body of a multipart POST
	// to the UpdateService's MultipartHttpPushUri.
	TransferPush Transfer = "multipart-push"
)

// Transfer methods as Result.Via names them.
const (
	viaSimple = "SimpleUpdate"
	viaPush   = "MultipartHttpPush"
)

// send starts the update of comp the way the request and the BMC allow.
func (a *applier) send(ctx context.Context, comp swComponent) (reply, error) {
	push := false
	switch a.req.Transfer {
	case TransferPush:
		if a.us.MultipartPush == "" {
			return reply{}, &bmc.Error{Op: a.op, Host: a.ep.String(), Class: bmc.ClassUnsupported,
				Err: errors.New("the UpdateService advertises no MultipartHttpPushUri; use SimpleUpdate with an image URL")}
		}
		push = true
	case TransferAuto:
		push = a.us.MultipartPush != "" || a.us.SimpleUpdate == ""
	}
	if push {
		if a.us.MultipartPush == "" {
			return reply{}, &bmc.Error{Op: a.op, Host: a.ep.String(), Class: bmc.ClassUnsupported,
				Err: errors.New("the UpdateService has neither a SimpleUpdate action nor a MultipartHttpPushUri")}
		}
		rep, err := a.push(ctx, comp)
		if err != nil {
			return rep, err
		}
		a.res.Via = viaPush
		return rep, nil
	}
	if a.us.SimpleUpdate == "" {
		return reply{}, &bmc.Error{Op: a.op, Host: a.ep.String(), Class: bmc.ClassUnsupported, Err: errors.New("the UpdateService has no SimpleUpdate action")}
	}
	if a.req.ImageURI == "" {
		return reply{}, &bmc.Error{Op: a.op, Host: a.ep.String(), Class: bmc.ClassUnsupported,
			Err: errors.New("the BMC takes no multipart push and the request names no image URL for SimpleUpdate; serve the package over HTTP and give its URL")}
	}
	rep, err := a.r.do(ctx, http.MethodPost, a.us.SimpleUpdate, map[string]any{
		"ImageURI": a.req.ImageURI,
		"Targets":  []string{comp.link},
	})
	if err != nil {
		return rep, wrapBMC(a.op+": SimpleUpdate", a.ep, err)
	}
	a.res.Via = viaSimple
	return rep, nil
}

// errChanged means the package file changed while it was being sent.
var errChanged = errors.New("the package file changed while it was sent")

// push sends the package as a multipart/form-data body (Redfish
// UpdateService MultipartHttpPushUri): an UpdateParameters part naming the
// target, and an UpdateFile part with the bytes. The file was verified
// before (Apply's first step); the bytes are hashed again from the one open
// file before the first byte leaves, and while they are sent, so that a
// file swapped or changed in between is never sent whole: the request is
// cut short before its closing boundary and the BMC installs nothing.
func (a *applier) push(ctx context.Context, comp swComponent) (reply, error) {
	p := a.req.Package
	want := normalizeFingerprint(p.SHA256)
	invalid := func(err error) error { return fwErr("verify package "+p.File, a.ep.String(), ClassPackageInvalid, err) }
	f, err := os.Open(p.File)
	if err != nil {
		return reply{}, invalid(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return reply{}, invalid(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return reply{}, invalid(fmt.Errorf("sha256 is %s, the baseline says %s: the file changed after it was verified", got, want))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return reply{}, invalid(err)
	}
	params, err := json.Marshal(map[string]any{"Targets": []string{comp.link}, "@Redfish.OperationApplyTime": "Immediate"})
	if err != nil {
		return reply{}, err
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan error, 1)
	go func() {
		err := func() error {
			part, err := mw.CreatePart(textproto.MIMEHeader{
				"Content-Disposition": {`form-data; name="UpdateParameters"`},
				"Content-Type":        {"application/json"},
			})
			if err != nil {
				return err
			}
			if _, err := part.Write(params); err != nil {
				return err
			}
			part, err = mw.CreatePart(textproto.MIMEHeader{
				"Content-Disposition": {fmt.Sprintf(`form-data; name="UpdateFile"; filename=%q`, filepath.Base(p.File))},
				"Content-Type":        {"application/octet-stream"},
			})
			if err != nil {
				return err
			}
			h := sha256.New()
			if _, err := io.Copy(io.MultiWriter(part, h), f); err != nil {
				return err
			}
			if hex.EncodeToString(h.Sum(nil)) != want {
				return errChanged
			}
			return mw.Close()
		}()
		pw.CloseWithError(err) // nil: a clean end of the body
		done <- err
	}()
	rep, err := a.r.send(ctx, http.MethodPost, a.us.MultipartPush, mw.FormDataContentType(), pr, a.c.cfg.TaskTimeout)
	pr.CloseWithError(errors.New("request over"))
	if werr := <-done; errors.Is(werr, errChanged) {
		return reply{}, invalid(errChanged)
	}
	if err != nil {
		return rep, wrapBMC(a.op+": multipart push", a.ep, err)
	}
	return rep, nil
}
