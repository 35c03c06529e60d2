// Package webhook sends Rackstrap's node events (hand-off, quarantine,
// release) to a site's HTTP endpoint: a JSON body signed with
// HMAC-SHA256. Delivery is at least once: the controller keeps every event
// in a durable outbox and resends it, byte for byte, until the receiver
// answers 2xx, so receivers deduplicate on the event id (HeaderID).
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Headers of a delivery.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the body
	// under the shared secret (the form GitHub's webhooks use).
	HeaderSignature = "X-Rackstrap-Signature-256"
	// HeaderID is the event's id, the same on every retry.
	HeaderID = "X-Rackstrap-Event-Id"
	// HeaderEvent is the event's kind (Event.Kind).
	HeaderEvent = "X-Rackstrap-Event"
	// HeaderAttempt counts deliveries of this event, from 1.
	HeaderAttempt = "X-Rackstrap-Attempt"
)

// Event kinds.
const (
	HandedOff   = "node.handed-off"
	Quarantined = "node.quarantined"
	Released    = "node.released"
)

// Kinds lists every event kind.
var Kinds = []string{HandedOff, Quarantined, Released}

// Event is the JSON body of a delivery.
type Event struct {
	ID   string    `json:"id"`
	Kind string    `json:"event"`
	At   time.Time `json:"at"`
	Node string    `json:"node"`
	From string    `json:"from,omitempty"`
	To   string    `json:"to"`
	// Facts Rackstrap verified (as known when the event happened).
	Rack     string `json:"rack,omitempty"`
	Slot     int    `json:"slot,omitempty"`
	Serial   string `json:"serial,omitempty"`
	Profile  string `json:"profile,omitempty"`
	GPUModel string `json:"gpuModel,omitempty"`
	GPUCount int    `json:"gpuCount,omitempty"`
	// Target is the cluster the node went to (slurm, kubernetes).
	Target   string `json:"target,omitempty"`
	Reason   string `json:"reason,omitempty"`
	AuditSeq int64  `json:"auditSeq"`
}

// Config is a webhook's configuration.
type Config struct {
	// URL receives a POST per event (http or https).
	URL string
	// Secret keys the HMAC-SHA256 signature.
	Secret []byte
	// Events are the kinds sent (default: all).
	Events []string
	// Timeout bounds one delivery (default 10s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from MinBackoff (default 1s) up to MaxBackoff (default 5m).
	MinBackoff, MaxBackoff time.Duration
}

func (c Config) withDefaults() Config {
	if len(c.Events) == 0 {
		c.Events = Kinds
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	u, err := url.Parse(c.URL)
	if c.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("webhook: url %q must be an http:// or https:// URL", c.URL))
	}
	if len(c.Secret) < 16 {
		errs = append(errs, errors.New("webhook: the secret must be at least 16 bytes: write one with 'openssl rand -hex 32 > webhook.secret' and name it in secretFile"))
	}
	for _, k := range c.Events {
		if !slices.Contains(Kinds, k) {
			errs = append(errs, fmt.Errorf("webhook: unknown event %q (known: %s)", k, strings.Join(Kinds, ", ")))
		}
	}
	if c.Timeout < 0 || c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, errors.New("webhook: timeout and backoffs must be positive, minBackoff at most maxBackoff"))
	}
	return errors.Join(errs...)
}

// Wants reports whether events of kind are sent.
func (c Config) Wants(kind string) bool { return slices.Contains(c.withDefaults().Events, kind) }

// Backoff is the wait after the attempt-th failed delivery (from 1).
func (c Config) Backoff(attempt int) time.Duration {
	c = c.withDefaults()
	d := c.MinBackoff
	for i := 1; i < attempt && d < c.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.MaxBackoff)
}

// file is the YAML form of a Config.
type file struct {
	URL        string   `yaml:"url"`
	SecretFile string   `yaml:"secretFile"`
	Events     []string `yaml:"events"`
	Timeout    string   `yaml:"timeout"`
	MinBackoff string   `yaml:"minBackoff"`
	MaxBackoff string   `yaml:"maxBackoff"`
}

// ParseConfig reads a webhook configuration file strictly (unknown keys
// are errors); secretFile is returned for the caller to read, relative
// paths left as written.
//
//	url: https://hooks.site.example/rackstrap
//	secretFile: /etc/rackstrap/webhook.secret
//	events: [node.handed-off, node.quarantined, node.released]
//	timeout: 10s
//	minBackoff: 1s
//	maxBackoff: 5m
func ParseConfig(name string, data []byte) (Config, string, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, "", fmt.Errorf("%s: empty webhook configuration: give at least url and secretFile", name)
		}
		return Config{}, "", fmt.Errorf("%s: %s (known keys: url, secretFile, events, timeout, minBackoff, maxBackoff)", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	c := Config{URL: f.URL, Events: f.Events}
	var errs []error
	for _, d := range []struct {
		key, val string
		to       *time.Duration
	}{{"timeout", f.Timeout, &c.Timeout}, {"minBackoff", f.MinBackoff, &c.MinBackoff}, {"maxBackoff", f.MaxBackoff, &c.MaxBackoff}} {
		if d.val == "" {
			continue
		}
		v, err := time.ParseDuration(d.val)
		if err != nil || v <= 0 {
			errs = append(errs, fmt.Errorf("%s: %s %q is not a positive duration (e.g. 10s, 5m)", name, d.key, d.val))
		}
		*d.to = v
	}
	if f.SecretFile == "" {
		errs = append(errs, fmt.Errorf("%s: no secretFile: name a file holding the shared HMAC secret", name))
	}
	if len(errs) > 0 {
		return Config{}, "", errors.Join(errs...)
	}
	c.Secret = bytes.Repeat([]byte{0}, 16) // stands in for the secret until the caller reads it
	if err := c.Validate(); err != nil {
		return Config{}, "", fmt.Errorf("%s: %w", name, err)
	}
	c.Secret = nil
	return c, f.SecretFile, nil
}

// LoadConfig reads a configuration file and the secret it names (a
// relative secretFile is relative to the configuration's directory);
// surrounding white space of the secret is dropped.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("webhook configuration: %w", err)
	}
	c, secretFile, err := ParseConfig(path, data)
	if err != nil {
		return Config{}, err
	}
	if !strings.HasPrefix(secretFile, "/") {
		if i := strings.LastIndex(path, "/"); i >= 0 {
			secretFile = path[:i+1] + secretFile
		}
	}
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		return Config{}, fmt.Errorf("webhook secret: %w", err)
	}
	c.Secret = bytes.TrimSpace(secret)
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Sign returns the HeaderSignature value of body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a HeaderSignature value in constant time (for receivers).
func Verify(secret, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(signature))
}

// Sender delivers events to one URL.
type Sender struct {
	cfg    Config
	client *http.Client
}

// New validates cfg; client nil uses a fresh http.Client.
func New(cfg Config, client *http.Client) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{}
	}
	return &Sender{cfg: cfg.withDefaults(), client: client}, nil
}

// Config returns the sender's configuration, defaults applied.
func (s *Sender) Config() Config { return s.cfg }

// StatusError is a delivery the receiver answered with a non-2xx status.
type StatusError struct {
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("receiver answered %d: %s", e.Status, e.Body)
}

// Send POSTs one recorded event body. attempt (from 1) is sent in
// HeaderAttempt; the body and its signature are the same on every attempt.
func (s *Sender) Send(ctx context.Context, id, kind string, body []byte, attempt int) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", id, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rackstrap-webhook/1")
	req.Header.Set(HeaderSignature, Sign(s.cfg.Secret, body))
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderEvent, kind)
	req.Header.Set(HeaderAttempt, fmt.Sprint(attempt))
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: post %s: %w", id, redact(s.cfg.URL), err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: post %s: %w", id, redact(s.cfg.URL), &StatusError{Status: resp.StatusCode, Body: strings.TrimSpace(string(msg))})
	}
	return nil
}

// redact drops credentials and the query from a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the webhook URL"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}
