package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDefaults(t *testing.T) {
	cfg, verbose, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil || verbose {
		t.Fatal(err)
	}
	if cfg.APIAddr != "127.0.0.1:8440" || cfg.DataAddr != "127.0.0.1:8443" || cfg.MQTTAddr != "127.0.0.1:8883" ||
		cfg.MQTTPlainAddr != "" || cfg.Region != "us-east-1" || cfg.AccountID != "123456789012" ||
		cfg.Retention != 3*time.Hour || cfg.MaxOpenTunnels != 100 || cfg.Strict || cfg.APITLS {
		t.Fatalf("defaults %+v", cfg)
	}
	if _, _, err := parseFlags([]string{"extra"}, &bytes.Buffer{}); err == nil {
		t.Fatal("stray argument accepted")
	}
}

func TestCerts(t *testing.T) {
	state, out := t.TempDir(), t.TempDir()
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"certs", "--thing", "pi-1", "--out", out, "--state-dir", state}, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(out, "pi-1.cert.pem"), filepath.Join(out, "pi-1.private.key")); err != nil {
		t.Fatalf("device pair: %v", err)
	}
	ca1, _ := os.ReadFile(filepath.Join(out, "ca.pem"))
	ca2, _ := os.ReadFile(filepath.Join(state, "ca.pem"))
	if len(ca1) == 0 || !bytes.Equal(ca1, ca2) {
		t.Fatal("ca.pem not written next to the device certificate")
	}
	if err := run(context.Background(), []string{"certs", "--state-dir", state}, &stdout, &bytes.Buffer{}); err == nil {
		t.Fatal("certs without --thing accepted")
	}
}

func TestRunPrintsEndpointsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr tunneltest.SyncBuffer
	done := make(chan error, 1)
	args := []string{"--api-addr", "127.0.0.1:0", "--data-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
		"--mqtt-plain-addr", "127.0.0.1:0", "--state-dir", t.TempDir()}
	go func() { done <- run(ctx, args, &stdout, &stderr) }()
	if !tunneltest.Poll(10*time.Second, func() bool { return strings.Contains(stdout.String(), "CA certificate:") }) {
		t.Fatalf("no endpoints printed: %q %q", stdout.String(), stderr.String())
	}
	for _, want := range []string{"API endpoint:   http://127.0.0.1:", "Data endpoint:  127.0.0.1:", "MQTT broker:    127.0.0.1:", "MQTT plain:     127.0.0.1:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestAuthFlags(t *testing.T) {
	dir := t.TempDir()
	cred := filepath.Join(dir, "credentials")
	if err := os.WriteFile(cred, []byte("[ci]\naws_access_key_id = AKIDCI\naws_secret_access_key = ci-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parseFlags([]string{"--credentials", cred}, &bytes.Buffer{})
	if err != nil || cfg.Credentials["AKIDCI"] != "ci-secret" || cfg.NoAuth {
		t.Fatalf("--credentials: %+v %v", cfg.Credentials, err)
	}
	cfg, _, err = parseFlags([]string{"--no-auth"}, &bytes.Buffer{})
	if err != nil || !cfg.NoAuth || cfg.Credentials != nil {
		t.Fatalf("--no-auth: %v", err)
	}
	if _, _, err := parseFlags([]string{"--no-auth", "--credentials", cred}, &bytes.Buffer{}); err == nil {
		t.Fatal("--no-auth with --credentials accepted")
	}
	if _, _, err := parseFlags([]string{"--credentials", filepath.Join(dir, "missing")}, &bytes.Buffer{}); err == nil {
		t.Fatal("missing credentials file accepted")
	}
}

func TestBrokerFlags(t *testing.T) {
	cfg, _, err := parseFlags([]string{"--broker-allow-all", "--mqtt-client-id", "pi-1=pi-1-dc", "--mqtt-client-id", "pi-1=x"}, &bytes.Buffer{})
	if err != nil || !cfg.BrokerAllowAll || strings.Join(cfg.ClientIDs["pi-1"], ",") != "pi-1-dc,x" {
		t.Fatalf("%+v %v", cfg, err)
	}
	if _, _, err := parseFlags([]string{"--mqtt-client-id", "pi-1"}, &bytes.Buffer{}); err == nil {
		t.Fatal("--mqtt-client-id without = accepted")
	}
}
