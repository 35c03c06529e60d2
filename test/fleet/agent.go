package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/pxe/ipxe"
)

// agentVersion is what the simulated agent reports.
const agentVersion = "fleet-sim/1"

// Agent API paths (controller/api).
const (
	pathCheckIn = "/api/v1/agent/checkin"
	pathTask    = "/api/v1/agent/task"
	pathResult  = "/api/v1/agent/task/result"
)

// errRefused: the controller refused the agent (a 4xx): retrying will not
// help.
var errRefused = errors.New("refused by the controller")

// agentTask is a task as GET /api/v1/agent/task returns it.
type agentTask struct {
	Key     string          `json:"key"`
	Node    string          `json:"node"`
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload"`
}

// imagePayload is an "image" task's payload.
type imagePayload struct {
	URL            string `json:"url"`
	SHA256         string `json:"sha256"`
	Size           int64  `json:"size"`
	Server         string `json:"server"`
	FirstBootToken string `json:"firstBootToken"`
}

// taskResult is what the agent posts when a task ends.
type taskResult struct {
	Key     string `json:"key"`
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
	Result  any    `json:"result,omitempty"`
}

// burnInCheck is one check's outcome in a burn-in result.
type burnInCheck struct {
	Name    string `json:"name"`
	Pass    bool   `json:"pass"`
	Message string `json:"message,omitempty"`
}

// netbootAgent is the agent in the netboot environment: it checks in with
// the token from the kernel command line, then runs tasks.
func (h *Host) netbootAgent(ctx context.Context, client *http.Client, cl ipxe.Cmdline) error {
	server, _ := cl.Get("rackstrap.server")
	token, _ := cl.Get("rackstrap.token")
	if phase, ok := cl.Get("rackstrap.phase"); ok && phase != "netboot" {
		return fmt.Errorf("agent: kernel command line says rackstrap.phase=%s, want netboot", phase)
	}
	if server == "" || token == "" {
		return fmt.Errorf("agent: the kernel command line has no rackstrap.server= or rackstrap.token= (%s)", cl)
	}
	h.stage(StageCheckIn)
	session, err := h.checkIn(ctx, client, server, token, "netboot")
	if err != nil {
		return err
	}
	return h.taskLoop(ctx, client, server, session)
}

// diskBoot boots the installed OS: its agent checks in once with the
// first-boot token the image task left on the disk, then runs tasks.
func (h *Host) diskBoot(ctx context.Context) error {
	h.update(func(s *HostStats) { s.DiskBoots++; s.Stage = StageFirmware })
	if err := sleep(ctx, h.rack.cfg.BootDelay); err != nil {
		return err
	}
	h.mu.Lock()
	d := h.disk
	h.mu.Unlock()
	if !d.imaged {
		return fmt.Errorf("disk boot: %w: the disk holds no image", errNoBoot)
	}
	client := h.httpClient()
	defer client.CloseIdleConnections()
	session := d.session
	if !d.tokenUsed {
		h.stage(StageCheckIn)
		s, err := h.checkIn(ctx, client, d.server, d.firstBootToken, "firstboot")
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.disk.tokenUsed, h.disk.session = true, s
		h.mu.Unlock()
		session = s
	}
	if session == "" {
		h.stage(StageOS)
		return nil
	}
	err := h.taskLoop(ctx, client, d.server, session)
	if d.tokenUsed && errors.Is(err, errRefused) {
		// A later boot of the installed OS: its agent's session is over.
		h.update(func(s *HostStats) { s.Stage = StageOS; s.Completed++ })
		return nil
	}
	return err
}

// checkIn posts the inventory; connection failures and 5xx are retried
// until ctx ends (a controller restarting), a 4xx is final.
func (h *Host) checkIn(ctx context.Context, client *http.Client, server, token, phase string) (string, error) {
	body, err := json.Marshal(map[string]any{"phase": phase, "agentVersion": agentVersion, "inventory": h.inventory()})
	if err != nil {
		return "", fmt.Errorf("agent: check-in: %w", err)
	}
	var reply struct {
		Node     string `json:"node"`
		Accepted bool   `json:"accepted"`
		Session  string `json:"session"`
	}
	if err := h.call(ctx, client, http.MethodPost, server+pathCheckIn, token, body, &reply); err != nil {
		return "", fmt.Errorf("agent: check-in (%s): %w", phase, err)
	}
	if !reply.Accepted || reply.Session == "" {
		return "", fmt.Errorf("agent: check-in (%s): %w: not accepted", phase, errRefused)
	}
	h.update(func(s *HostStats) {
		s.Node = reply.Node
		if phase == "firstboot" {
			s.FirstbootCheckIns++
		} else {
			s.NetbootCheckIns++
		}
		s.Stage = StageAgent
		s.Completed++
	})
	h.log.Info("agent checked in", "phase", phase, "node", reply.Node)
	return reply.Session, nil
}

// call makes one API request with a bearer token, retrying connection
// failures and 5xx answers every Poll (growing to 2 s) until ctx ends. A
// 204 leaves out untouched and returns errNoContent.
func (h *Host) call(ctx context.Context, client *http.Client, method, url, token string, body []byte, out any) error {
	wait := h.rack.cfg.Poll
	for {
		retry, err := h.callOnce(ctx, client, method, url, token, body, out)
		if err == nil || !retry || ctx.Err() != nil {
			return err
		}
		h.log.Debug("agent: controller unavailable; retrying", "url", url, "err", err, "in", wait)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(wait*2, 2*time.Second)
	}
}

var errNoContent = errors.New("no content")

func (h *Host) callOnce(ctx context.Context, client *http.Client, method, url, token string, body []byte, out any) (retry bool, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", method, url, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return true, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return true, fmt.Errorf("%s %s: read the answer: %w", method, url, err)
	}
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return false, errNoContent
	case resp.StatusCode >= 500:
		return true, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(b)))
	case resp.StatusCode != http.StatusOK:
		return false, fmt.Errorf("%s %s: %w: %s: %s", method, url, errRefused, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return false, fmt.Errorf("%s %s: answer: %w", method, url, err)
		}
	}
	return false, nil
}

// taskLoop polls for tasks as the real agent does (a long poll the
// controller may hold open for LongPoll; against one that answers at once,
// every Poll backing off to MaxPoll while idle) and runs them until ctx ends
// (the next power cycle) or the controller refuses the session.
func (h *Host) taskLoop(ctx context.Context, client *http.Client, server, session string) error {
	poll := h.rack.cfg.Poll
	url := server + pathTask
	if lp := h.rack.cfg.LongPoll; lp > 0 {
		url += "?wait=" + strconv.Itoa(int(lp/time.Second))
	}
	for {
		h.stage(StageAgent)
		var t agentTask
		asked := time.Now()
		err := h.call(ctx, client, http.MethodGet, url, session, nil, &t)
		switch {
		case errors.Is(err, errNoContent):
			if lp := h.rack.cfg.LongPoll; lp > 0 && time.Since(asked) >= lp/2 {
				continue // the controller held the poll: ask again at once
			}
			if err := sleep(ctx, poll); err != nil {
				return err
			}
			poll = min(2*poll, h.rack.cfg.MaxPoll)
			continue
		case err != nil:
			return fmt.Errorf("agent: %w", err)
		}
		poll = h.rack.cfg.Poll
		res, again := h.taskRun(ctx, client, t)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		body, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("agent: task %s: %w", t.Key, err)
		}
		if err := h.call(ctx, client, http.MethodPost, server+pathResult, session, body, nil); err != nil {
			return fmt.Errorf("agent: task %s: report: %w", t.Key, err)
		}
		if !again {
			h.mu.Lock()
			h.results[t.Key] = res
			h.mu.Unlock()
		}
		h.log.Info("agent: task done", "key", t.Key, "kind", t.Kind, "ok", res.OK, "message", res.Message)
	}
}

// taskRun runs t, or returns the result already reported for its key (a
// task handed out again: again is true, and nothing is run twice).
func (h *Host) taskRun(ctx context.Context, client *http.Client, t agentTask) (res taskResult, again bool) {
	h.mu.Lock()
	prev, done := h.results[t.Key]
	if done {
		h.stats.Redelivered++
	} else {
		h.stats.Tasks++
		h.stats.TaskRuns[t.Key]++
	}
	h.mu.Unlock()
	if done {
		h.log.Warn("agent: task handed out again after its result was reported; reporting it again", "key", t.Key)
		return prev, true
	}
	switch t.Kind {
	case "image":
		h.stage(StageImage)
		return h.imageTask(ctx, client, t), false
	case "burn-in":
		h.stage(StageBurnIn)
		return h.burnInTask(ctx, t), false
	}
	h.fail(fmt.Errorf("agent: task %s: unknown kind %q", t.Key, t.Kind))
	return taskResult{Key: t.Key, Message: fmt.Sprintf("the agent does not know task kind %q", t.Kind)}, false
}

// imageTask streams the image, counting and hashing it, and keeps the
// first-boot data as if written to the disk with it.
func (h *Host) imageTask(ctx context.Context, client *http.Client, t agentTask) taskResult {
	var p imagePayload
	if err := json.Unmarshal(t.Payload, &p); err != nil || p.URL == "" {
		err = errors.Join(err, errors.New("no url"))
		h.fail(fmt.Errorf("agent: image task %s: payload: %w", t.Key, err))
		return taskResult{Key: t.Key, Message: "image payload: " + err.Error()}
	}
	var rate int64
	if h.opt.Fault == FaultSlowDownload {
		rate = h.rack.cfg.SlowRate
	}
	var sum hash.Hash
	start := time.Now()
	n, err := h.download(ctx, client, p.URL, rate, func() io.Writer {
		sum = sha256.New()
		return sum
	})
	h.update(func(s *HostStats) { s.ImageBytes += n; s.ImageTime = time.Since(start) })
	if err != nil {
		h.fail(fmt.Errorf("agent: image task %s: %w", t.Key, err))
		return taskResult{Key: t.Key, Message: "download: " + err.Error()}
	}
	digest := hex.EncodeToString(sum.Sum(nil))
	if h.opt.Fault == FaultImageCorrupt {
		b := sha256.Sum256([]byte("corrupt:" + digest))
		digest = hex.EncodeToString(b[:])
	}
	h.mu.Lock()
	h.disk = disk{imaged: true, server: strings.TrimSuffix(p.Server, "/"), firstBootToken: p.FirstBootToken}
	h.stats.ImagesWritten++
	h.stats.Imaged = true
	h.stats.ImageSHA256 = digest
	h.mu.Unlock()
	return taskResult{Key: t.Key, OK: true, Result: map[string]any{"sha256": digest, "bytes": n}}
}

// burnInTask runs each named check for BootDelay; FaultBurnInFail fails
// the first.
func (h *Host) burnInTask(ctx context.Context, t agentTask) taskResult {
	var p struct {
		Checks []string `json:"checks"`
	}
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		h.fail(fmt.Errorf("agent: burn-in task %s: payload: %w", t.Key, err))
		return taskResult{Key: t.Key, Message: "burn-in payload: " + err.Error()}
	}
	checks := make([]burnInCheck, 0, len(p.Checks))
	ok, msg := true, ""
	for i, name := range p.Checks {
		if err := sleep(ctx, h.rack.cfg.BootDelay); err != nil {
			return taskResult{Key: t.Key, Message: "interrupted"}
		}
		c := burnInCheck{Name: name, Pass: true}
		if i == 0 && h.opt.Fault == FaultBurnInFail {
			c.Pass, c.Message = false, "simulated failure (fault burnin-fail)"
			ok, msg = false, "check "+name+" failed: "+c.Message
		}
		checks = append(checks, c)
	}
	h.update(func(s *HostStats) { s.BurnIns++; s.BurnInPassed = ok })
	return taskResult{Key: t.Key, OK: ok, Message: msg, Result: map[string]any{"checks": checks}}
}
