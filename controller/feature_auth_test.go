package controller

import (
	"fmt"
	"testing"
)

func TestAuthModes(t *testing.T) {
	t.Parallel()
	for in, want := range map[[4]string]string{
		// mode, tls, listen, real edge → auth, tls
		{"auto", "auto", "127.0.0.1:8080", ""}:    "false false",
		{"auto", "auto", "localhost:8080", ""}:    "false false",
		{"auto", "auto", "[::1]:8080", ""}:        "false false",
		{"auto", "auto", "0.0.0.0:8080", ""}:      "true true",
		{"auto", "auto", ":8080", ""}:             "true true",
		{"auto", "auto", "10.0.0.1:8080", ""}:     "true true",
		{"auto", "auto", "10.0.0.1:8080", "real"}: "true false",
		{"auto", "on", "10.0.0.1:8080", "real"}:   "true true",
		{"on", "auto", "127.0.0.1:8080", ""}:      "true true",
		{"off", "auto", "0.0.0.0:8080", ""}:       "false false",
		{"off", "on", "0.0.0.0:8080", ""}:         "false true",
		{"on", "off", "0.0.0.0:8080", ""}:         "true false",
	} {
		a, tl := AuthConfig{Mode: in[0], TLS: in[1]}.modes(in[2], in[3] == "real")
		if got := fmt.Sprint(a, tl); got != want {
			t.Errorf("modes(%v) = %s, want %s", in, got, want)
		}
	}
	if _, err := NewAuthFeature(AuthConfig{Mode: "yes", TLS: "auto"}); err == nil {
		t.Error("NewAuthFeature accepted --auth yes")
	}
	if _, err := NewAuthFeature(AuthConfig{Mode: "on", TLS: "on", ServerCertFile: "x.crt"}); err == nil {
		t.Error("NewAuthFeature accepted --tls-cert without --tls-key")
	}
}
