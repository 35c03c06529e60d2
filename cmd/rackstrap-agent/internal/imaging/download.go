package imaging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// permanentError is a download failure that retrying cannot fix.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

func permanent(format string, args ...any) error {
	return &permanentError{fmt.Errorf(format, args...)}
}

// download is the image's bytes from url as one io.Reader. A connection
// that drops, stalls for longer than idle, or ends before size bytes is
// reopened with a Range request from the byte it stopped at (If-Range with
// the first answer's ETag or Last-Modified, so a file that changed on the
// server is not spliced); after retries attempts in a row that bring no new
// byte it gives up.
type download struct {
	ctx     context.Context
	client  *http.Client
	url     string
	size    int64
	retries int
	wait    time.Duration
	idle    time.Duration
	log     *slog.Logger

	off       int64
	body      io.ReadCloser
	cancel    context.CancelFunc
	timer     *time.Timer
	validator string
	failures  int
	lastErr   error
	// Resumes counts the requests made after the first (Range requests
	// after a drop, and retries of a first request that failed).
	Resumes int
}

func (d *download) close() {
	if d.body != nil {
		d.body.Close()
		d.body = nil
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	if d.cancel != nil {
		d.cancel()
	}
}

// Close ends the download.
func (d *download) Close() error {
	d.close()
	return nil
}

// open sends the request for the bytes from d.off on.
func (d *download) open() error {
	ctx, cancel := context.WithCancel(d.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		cancel()
		return permanent("image URL %q: %v", d.url, err)
	}
	if d.off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", d.off))
		if d.validator != "" {
			req.Header.Set("If-Range", d.validator)
		}
	}
	// The idle timer starts now: a server that accepts the connection and
	// never answers is a stall too.
	d.timer = time.AfterFunc(d.idle, cancel)
	resp, err := d.client.Do(req)
	if err != nil {
		d.timer.Stop()
		cancel()
		return fmt.Errorf("get %s: %w", d.url, err)
	}
	fail := func(err error) error {
		resp.Body.Close()
		d.timer.Stop()
		cancel()
		return err
	}
	switch {
	case resp.StatusCode == http.StatusOK && d.off == 0 && d.size == 0:
		// a compressed image: its length is the server's
		if resp.ContentLength <= 0 {
			return fail(permanent("the image server sends no Content-Length for the compressed image %s: the download could not be resumed; serve it as a file", d.url))
		}
		d.size = resp.ContentLength
		d.setValidator(resp)
	case resp.StatusCode == http.StatusOK && d.off == 0:
		if resp.ContentLength >= 0 && resp.ContentLength != d.size {
			return fail(permanent("the image server sends %d bytes for %s, the task says the image is %d bytes: wrong image or a truncated file on the server", resp.ContentLength, d.url, d.size))
		}
		d.setValidator(resp)
	case resp.StatusCode == http.StatusOK:
		if d.validator != "" {
			return fail(permanent("the image at %s changed on the server during the download (If-Range did not match)", d.url))
		}
		// The server ignores Range: read past what we have.
		if _, err := io.CopyN(io.Discard, resp.Body, d.off); err != nil {
			return fail(fmt.Errorf("get %s: skip to byte %d: %w", d.url, d.off, err))
		}
	case resp.StatusCode == http.StatusPartialContent && d.off > 0:
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != d.off {
			return fail(permanent("the image server answered a request for bytes %d- with Content-Range %q", d.off, resp.Header.Get("Content-Range")))
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return fail(permanent("truncated download: the image server has only %d bytes of %s, the task says %d", d.off, d.url, d.size))
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return fail(fmt.Errorf("get %s: HTTP %s", d.url, resp.Status))
	default:
		return fail(permanent("get %s: HTTP %s", d.url, resp.Status))
	}
	d.body, d.cancel = resp.Body, cancel
	return nil
}

// setValidator keeps the first answer's ETag (or Last-Modified) for
// If-Range.
func (d *download) setValidator(resp *http.Response) {
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		d.validator = et
	} else if lm := resp.Header.Get("Last-Modified"); lm != "" {
		d.validator = lm
	}
}

func contentRangeStart(h string) (int64, bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil
}

// Read implements io.Reader.
func (d *download) Read(p []byte) (int, error) {
	for {
		if d.body == nil && d.size > 0 && d.off >= d.size {
			return 0, io.EOF
		}
		if d.body == nil {
			if d.off > 0 || d.failures > 0 {
				d.Resumes++
			}
			if err := d.open(); err != nil {
				if d.ctx.Err() != nil {
					return 0, d.ctx.Err()
				}
				if errors.As(err, new(*permanentError)) {
					return 0, err
				}
				if err := d.retry(err); err != nil {
					return 0, err
				}
				continue
			}
		}
		n, err := d.body.Read(p)
		d.off += int64(n)
		if n > 0 {
			d.failures = 0
			d.timer.Reset(d.idle)
		}
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, io.EOF) && d.off >= d.size:
			d.close()
			return n, io.EOF
		}
		// Dropped, stalled, or ended early: reopen from d.off.
		d.close()
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("connection ended at byte %d of %d", d.off, d.size)
		}
		if d.ctx.Err() != nil {
			return n, d.ctx.Err()
		}
		if n > 0 {
			d.lastErr = err
			return n, nil
		}
		if err := d.retry(err); err != nil {
			return 0, err
		}
	}
}

// retry counts a failed attempt and waits before the next.
func (d *download) retry(err error) error {
	if d.lastErr != nil && d.failures == 0 {
		err = d.lastErr // the error that ended the last good stretch
	}
	d.lastErr = nil
	d.failures++
	if d.failures > d.retries {
		return fmt.Errorf("download %s: gave up after %d attempts without progress at byte %d of %d: %v", d.url, d.failures, d.off, d.size, err)
	}
	wait := d.wait * time.Duration(min(d.failures, 8))
	d.log.Warn("image download interrupted; resuming with a Range request", "at", d.off, "of", d.size, "attempt", d.failures, "wait", wait, "err", err)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-d.ctx.Done():
		return d.ctx.Err()
	case <-t.C:
		return nil
	}
}
