package firmware

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

// testLogger writes to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startSim serves one simulated BMC over HTTP on loopback.
func startSim(t *testing.T, opts redfishsim.Options, node redfishsim.Node) *redfishsim.BMC {
	t.Helper()
	return startFleet(t, redfishsim.Config{HTTP: true, Options: opts}, node).BMCs()[0]
}

func startFleet(t *testing.T, cfg redfishsim.Config, nodes ...redfishsim.Node) *redfishsim.Fleet {
	t.Helper()
	f, err := redfishsim.Start(cfg, nodes...)
	if err != nil {
		t.Fatalf("redfishsim.Start: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func endpointOf(b *redfishsim.BMC) bmc.Endpoint {
	return bmc.Endpoint{Address: b.Endpoint(), Username: "admin", Password: "password"}
}

// testKey is a signing key the test trusts.
type testKey struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newKey(t *testing.T) testKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{pub, priv}
}

// writePackage writes a package file named name (the simulator installs
// the version its URL's file name ends with), signs it with k when k is
// not nil, and returns its baseline entry.
func writePackage(t *testing.T, dir, name, version string, reset Reset, k *testKey) Package {
	t.Helper()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, []byte("firmware image "+name+" "+version+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("firmware image " + name + " " + version + "\n"))
	p := Package{File: file, SHA256: hex.EncodeToString(sum[:]), Version: version, Reset: reset}
	if k != nil {
		sig, sha, err := SignPackage(file, k.priv)
		if err != nil {
			t.Fatal(err)
		}
		if sha != p.SHA256 {
			t.Fatalf("SignPackage sha256 = %s, want %s", sha, p.SHA256)
		}
		p.Signature = file + ".sig"
		if err := os.WriteFile(p.Signature, sig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// fastConfig polls quickly and trusts k.
func fastConfig(t *testing.T, k testKey) Config {
	return Config{
		Timeout: 2 * time.Second, RequestTimeout: 5 * time.Second, TaskTimeout: 10 * time.Second, VerifyTimeout: 10 * time.Second,
		PollInterval: 15 * time.Millisecond, TrustedKeys: []ed25519.PublicKey{k.pub}, Logger: testLogger(t),
	}
}

// updates counts the firmware updates the simulated BMC applied (its event
// log says "Firmware X updated to V").
func updates(b *redfishsim.BMC) int {
	n := 0
	for _, e := range b.SEL() {
		if strings.HasPrefix(e.Message, "Firmware ") {
			n++
		}
	}
	return n
}

// tasks counts the tasks the simulated BMC has started, read over HTTP.
func tasks(t *testing.T, b *redfishsim.BMC) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.Endpoint()+"/redfish/v1/TaskService/Tasks", nil)
	req.SetBasicAuth("admin", "password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct{ Members []json.RawMessage }
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return len(c.Members)
}
