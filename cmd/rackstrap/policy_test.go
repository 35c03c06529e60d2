package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyLintCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("api_version: rackstrap.io/policy/v1\nimages:\n  default: [\"gpu-node:*\"]\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("api_version: rackstrap.io/policy/v1\npowr:\n  timezone: UTC\n"), 0o644)
	got, err := runKeysBundleCmd(t, newPolicyCmd(&globals{output: "table"}), "lint", good)
	if err != nil || !strings.Contains(got, "good.yaml: ok (rules: validation, allowed-images)") {
		t.Fatalf("policy lint good = %q, %v", got, err)
	}
	got, err = runKeysBundleCmd(t, newPolicyCmd(&globals{output: "table"}), "lint", good, bad)
	if err == nil || !strings.Contains(got, `bad.yaml:2:1: unknown key "powr"; did you mean "power"?`) || !strings.Contains(err.Error(), "1 of 2 files") {
		t.Fatalf("policy lint bad = %q, %v", got, err)
	}
}
