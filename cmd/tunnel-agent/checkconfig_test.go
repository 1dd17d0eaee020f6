package main

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
)

// checkBase is a valid config for the PKI (files under the test's temp dir).
func checkBase(p *notifytest.PKI, port int, cert, key, ca string) string {
	if cert == "" {
		cert, key = p.ClientCertFile, p.ClientKeyFile
	}
	if ca == "" {
		ca = p.CAFile
	}
	return fmt.Sprintf("thing_name: pi-1\nendpoint: localhost\nport: %d\ncert: %s\nkey: %s\nroot_ca: %s\nservices: {SSH: 127.0.0.1:22}\n",
		port, cert, key, ca)
}

func TestCheckConfigFindings(t *testing.T) {
	// Registered first, so it runs after the broker's cleanup: --connect
	// leaves no MQTT goroutine behind.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	p := notifytest.NewPKI(t, "pi-1")
	other := notifytest.NewPKI(t, "pi-1")
	now := time.Now()
	expCert, expKey := p.IssueClient(t, "expired", "pi-1", x509.ExtKeyUsageClientAuth, now.Add(-48*time.Hour), now.Add(-time.Hour))
	soonCert, soonKey := p.IssueClient(t, "soon", "pi-1", x509.ExtKeyUsageClientAuth, now.Add(-time.Hour), now.Add(10*24*time.Hour))
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	tests := []struct {
		name   string
		yaml   string
		args   []string
		ok     bool
		want   []string
		reject []string
	}{
		{"good", checkBase(p, 8883, "", "", ""), nil, true,
			[]string{"ok: cert", "ok: root_ca", "1 certificate(s)", "# configuration OK"}, []string{"problem:"}},
		{"expired certificate", checkBase(p, 8883, expCert, expKey, ""), nil, false,
			[]string{"problem: cert " + expCert + " expired on", "create-keys-and-certificate"}, nil},
		{"expires within 30 days", checkBase(p, 8883, soonCert, soonKey, ""), nil, true,
			[]string{"warning: cert " + soonCert + " expires on", "in 9 days", "# configuration OK"}, nil},
		{"key of another certificate", checkBase(p, 8883, p.ClientCertFile, other.ClientKeyFile, ""), nil, false,
			[]string{"problem: cert", "private key does not match public key", "the key is the one issued with this certificate"}, nil},
		{"garbage root CA", checkBase(p, 8883, "", "", garbage), nil, false,
			[]string{"problem: root_ca " + garbage + " holds no PEM certificate", "AmazonRootCA1.pem"}, nil},
		{"files under /tmp", checkBase(p, 8883, "", "", ""), nil, true,
			[]string{"warning: if run by the tunnel-agent systemd unit: " + p.ClientCertFile, "PrivateTmp=yes"}, nil},
		{"state_dir outside the unit's", checkBase(p, 8883, "", "", "") + "state_dir: /srv/ta\n", nil, true,
			[]string{"state_dir /srv/ta", "ProtectSystem=strict", "ReadWritePaths=/srv/ta"}, nil},
		{"unix socket not there", strings.Replace(checkBase(p, 8883, "", "", ""), "{SSH: 127.0.0.1:22}", "{SSH: 127.0.0.1:22, ADMIN: \"unix:/run/no-such-admin.sock\"}", 1), nil, true,
			[]string{"warning: unix:/run/no-such-admin.sock: " + currentUser(t) + " cannot connect: dial unix /run/no-such-admin.sock", "is the service running?"}, nil},
		{"connect", checkBase(p, b.Port(), "", "", ""), []string{"--connect"}, true,
			[]string{"ok: mqtt: connected and subscribed to $aws/things/pi-1/tunnels/notify"}, nil},
		{"connect refused", checkBase(p, refusedPort(t), "", "", ""), []string{"--connect"}, false,
			[]string{"problem: mqtt: tcp_refused", "to do: nothing listens on"}, nil},
		{"connect with an untrusted certificate", checkBase(p, b.Port(), other.ClientCertFile, other.ClientKeyFile, ""), []string{"--connect"}, false,
			[]string{"problem: mqtt: tls_client_cert", "ACTIVE"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"check-config", "--config", writeConfig(t, tt.yaml), "--as-user", currentUser(t)}, tt.args...)
			out, errOut, rc := run(args...)
			if (rc == 0) != tt.ok {
				t.Errorf("rc %d, want ok=%v\n%s%s", rc, tt.ok, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out+errOut, w) {
					t.Errorf("output lacks %q:\n%s%s", w, out, errOut)
				}
			}
			for _, w := range tt.reject {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}

func currentUser(t *testing.T) string {
	name := os.Getenv("USER")
	if name == "" {
		name = "root"
	}
	return name
}

// As root, check-config tries the files as the service user for real (a
// child process with that user's credentials), so a key only root can read
// is reported, with what to do.
func TestCheckConfigReadableByServiceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to another user")
	}
	p := notifytest.NewPKI(t, "pi-1")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The child is this test binary, copied where nobody can run it.
	exe, _ := os.Executable()
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	self = filepath.Join(dir, "tunnel-agent.test")
	t.Cleanup(func() { self = "" })
	if err := os.WriteFile(self, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "client.pem")
	b, _ := os.ReadFile(p.ClientCertFile)
	if err := os.WriteFile(pub, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, checkBase(p, 8883, pub, p.ClientKeyFile, ""))
	t.Setenv("TUNNEL_AGENT_TEST_MAIN", "1") // the child is this test binary
	out, errOut, rc := run("check-config", "--config", cfg, "--as-user", "nobody")
	if rc == 0 {
		t.Errorf("rc 0 with a key nobody cannot read:\n%s", out)
	}
	for _, w := range []string{"ok: " + pub + " readable by nobody", "problem: " + p.ClientKeyFile + ": nobody cannot read it: open",
		"permission denied", "chmod 0640"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s%s", w, out, errOut)
		}
	}
}

// With the unit installed, paths its sandbox hides are problems.
func TestCheckSandboxInstalled(t *testing.T) {
	cfg := config.Default()
	cfg.Cert, cfg.Key, cfg.RootCA = "/home/pi/certs/device.pem.crt", "/etc/tunnel-agent/key.pem", "/root/AmazonRootCA1.pem"
	cfg.Services = map[string]string{"ADMIN": "unix:/tmp/admin.sock", "SSH": "127.0.0.1:22"}
	var out bytes.Buffer
	r := &report{out: &out}
	checkSandbox(r, cfg, true)
	if r.problems != 3 {
		t.Errorf("%d problems, want 3:\n%s", r.problems, out.String())
	}
	for _, w := range []string{"problem: /home/pi/certs/device.pem.crt: the unit's ProtectHome=yes", "problem: /root/AmazonRootCA1.pem",
		"problem: unix:/tmp/admin.sock: the unit's PrivateTmp=yes"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("lacks %q:\n%s", w, out.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	if _, errOut, rc := run("run", "--no-such-flag"); rc != 2 || !strings.Contains(errOut, "flag provided but not defined: -no-such-flag") {
		t.Errorf("unknown flag: rc %d, %q", rc, errOut)
	}
	if _, errOut, rc := run("check-config", "stray"); rc != 2 || !strings.Contains(errOut, `unexpected argument "stray"`) {
		t.Errorf("stray argument: rc %d, %q", rc, errOut)
	}
	if _, errOut, rc := run("check-config", "--config", writeConfig(t, "max_tunnel_lifetime: 2\nconn_buffer: [1]\n")); rc != 1 ||
		!strings.Contains(errOut, "line 1: max_tunnel_lifetime: `2` is not a duration such as 2s, 90m or 12h") ||
		!strings.Contains(errOut, "line 2: conn_buffer:") {
		t.Errorf("type error: rc %d, %q", rc, errOut)
	}
}

func TestRunHelpShowsDefaults(t *testing.T) {
	s := newSettings("run", fromMQTT)
	var out bytes.Buffer
	s.fs.SetOutput(&out)
	s.fs.PrintDefaults()
	for _, w := range []string{"-port port", "(default 8883)", "-max-tunnels number", "(default 10)", "-conn-buffer size",
		"(default 1MiB)", "-log-level level", "(default info)", "-state-dir directory", "(default /var/lib/tunnel-agent)"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("-h lacks %q:\n%s", w, out.String())
		}
	}
}
