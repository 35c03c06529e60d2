package fwrun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client calls the firmware API of a controller (the CLI's side).
type Client struct {
	base  string
	hc    *http.Client
	token string
}

// NewClient returns a client of the controller at base (http(s)://host:port)
// that sends token (if any) through hc.
func NewClient(base string, hc *http.Client, token string) *Client {
	return &Client{base: strings.TrimSuffix(base, "/"), hc: hc, token: token}
}

// APIError is an error answer of the controller.
type APIError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
}

func (e *APIError) Error() string {
	s := e.Message
	if s == "" {
		s = fmt.Sprintf("HTTP %d", e.Status)
	}
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w; is the controller running ('rackstrap serve') and --server right?", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
		}
		if resp.StatusCode == http.StatusNotFound && e.Code == "" {
			e.Hint = "is the controller running with --firmware-dir?"
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode the answer: %w", method, path, err)
		}
	}
	return nil
}

// Start plans a run and, unless in.DryRun, starts it.
func (c *Client) Start(ctx context.Context, in RunRequest) (PlanReply, error) {
	var out PlanReply
	err := c.do(ctx, http.MethodPost, "/api/v1/firmware/runs", in, &out)
	return out, err
}

// Run returns one run with its steps.
func (c *Client) Run(ctx context.Context, id int64) (RunView, error) {
	var out RunView
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/firmware/runs/%d", id), nil, &out)
	return out, err
}

// Cancel cancels a running run.
func (c *Client) Cancel(ctx context.Context, id int64) (RunView, error) {
	var out RunView
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/firmware/runs/%d/cancel", id), struct{}{}, &out)
	return out, err
}

// Runs lists the runs, newest first.
func (c *Client) Runs(ctx context.Context) ([]RunView, error) {
	var out []RunView
	err := c.do(ctx, http.MethodGet, "/api/v1/firmware/runs", nil, &out)
	return out, err
}

// Compliance compares the nodes (of a rack) with a baseline.
func (c *Client) Compliance(ctx context.Context, baseline, rack string) ([]NodeCompliance, error) {
	q := url.Values{}
	if baseline != "" {
		q.Set("baseline", baseline)
	}
	if rack != "" {
		q.Set("rack", rack)
	}
	var out []NodeCompliance
	err := c.do(ctx, http.MethodGet, "/api/v1/firmware/compliance?"+q.Encode(), nil, &out)
	return out, err
}
