package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

const sshdPath = "/usr/sbin/sshd"

// testSSHD is an unprivileged-style sshd instance on loopback with its own keys.
type testSSHD struct {
	addr, clientKey, knownHosts, user string
}

// startSSHD runs sshd -D with a host key, an authorized client key and a
// known_hosts entry under the alias thing, all in a temp dir.
func startSSHD(t *testing.T, thing string) *testSSHD {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skipf("%s not installed (Debian package openssh-server): skipping the real-sshd test", sshdPath)
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh client not installed: skipping the real-sshd test")
	}
	if os.Geteuid() == 0 { // sshd started by root insists on its privilege separation user and directory
		if _, err := user.Lookup("sshd"); err != nil {
			// openssh-server's postinst creates it; .ci/run makes sure it exists.
			msg := "sshd runs as root and its privilege separation user sshd does not exist " +
				"(create it: useradd --system --home-dir /run/sshd --shell /usr/sbin/nologin sshd)"
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg + ": skipping the real-sshd test")
		}
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Skipf("cannot create /run/sshd for sshd: %v", err)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &testSSHD{clientKey: filepath.Join(dir, "id"), knownHosts: filepath.Join(dir, "known_hosts"), user: u.Username}
	hostKey := filepath.Join(dir, "host_key")
	for _, k := range []string{hostKey, s.clientKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub := func(f string) string {
		b, err := os.ReadFile(f + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("authorized_keys", pub(s.clientKey)+"\n")
	write("known_hosts", thing+" "+pub(hostKey)+"\n")
	s.addr = runSSHD(t, dir, hostKey)
	return s
}

// runSSHD starts sshd on a free loopback port and waits until it accepts.
func runSSHD(t *testing.T, dir, hostKey string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // sshd binds it itself: there is no way to hand it a listener
	_, port, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel ERROR
`, port, hostKey, filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var errOut tunneltest.SyncBuffer
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfgFile)
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	waitFor(t, "sshd to listen on "+addr, 10*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("sshd exited: %s", errOut.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

func (s *testSSHD) sshArgs(command ...string) []string {
	args := []string{"-F", "/dev/null", "-i", s.clientKey, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + s.knownHosts, "-o", "LogLevel=ERROR"}
	return append(args, command...)
}

func TestSSHThroughTunnel(t *testing.T) {
	isolateAWS(t)
	const thing = "pi-ssh"
	sshd := startSSHD(t, thing)
	e := startEmulator(t, emulator.Config{})
	startAgent(t, e, thing, map[string]string{"SSH": sshd.addr})
	api := testAPI(t, e)
	base := []string{"ssh", thing, "--endpoint", e.APIURL(), "--data-endpoint", e.DataEndpoint(),
		"--ca-file", e.CAFile(), "--user", sshd.user, "--lifetime", "5m", "--"}

	r := runCLI(t, nil, append(base, sshd.sshArgs("echo", "hello", "from", "$((40+2))")...)...)
	if r.code != 0 || r.stdout != "hello from 42\n" {
		t.Fatalf("ssh echo: exit %d stdout %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "Closed tunnel") {
		t.Errorf("stderr lacks the close notice:\n%s", r.stderr)
	}

	r = runCLI(t, nil, append(base, sshd.sshArgs("exit", "3")...)...)
	if r.code != 3 {
		t.Errorf("remote exit 3: tunnelctl exit %d\n%s", r.code, r.stderr)
	}

	// Ctrl-C (context cancel) while the remote command runs: ssh stops, the tunnel closes.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result, 1)
	var out, errb tunneltest.SyncBuffer
	go func() {
		a := &App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
		done <- result{a.Run(ctx, append(base, sshd.sshArgs("echo started; sleep 60")...)), out.String(), errb.String()}
	}()
	waitFor(t, "the remote command to start", 30*time.Second, func() bool { return strings.Contains(out.String(), "started") })
	cancel()
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("tunnelctl ssh did not return within 15s of Ctrl-C")
	}
	if r.code == 0 || !strings.Contains(r.stderr, "Closed tunnel") {
		t.Errorf("after Ctrl-C: exit %d\n%s", r.code, r.stderr)
	}

	list, err := api.ListAllTunnels(context.Background(), thing, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Errorf("want 3 tunnels, got %d", len(list))
	}
	for _, s := range list {
		if s.Status != awsapi.StatusClosed {
			t.Errorf("tunnel %s left %s", s.TunnelID, s.Status)
		}
	}
}

func TestSSHDeviceAbsent(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	r := runCLI(t, nil, "ssh", "nobody-home", "--endpoint", e.APIURL(), "--data-endpoint", e.DataEndpoint(),
		"--ca-file", e.CAFile(), "--wait", "10s") // long enough for the source side to connect on a loaded machine
	if r.code != ExitFailure || !strings.Contains(r.stderr, "did not connect within 10s") || !strings.Contains(r.stderr, "Closed tunnel") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
}

func TestSplitSSHArgs(t *testing.T) {
	tests := []struct {
		in            []string
		opts, command string
	}{
		{[]string{"-i", "k", "-v", "uptime"}, "-i k -v", "uptime"},
		{[]string{"-p22", "-o", "A=b", "ls", "-l"}, "-p22 -o A=b", "ls -l"},
		{[]string{"-vA", "--", "-x"}, "-vA", "-x"},
		{[]string{"-tt"}, "-tt", ""},
		{nil, "", ""},
	}
	for _, tc := range tests {
		opts, cmd := splitSSHArgs(tc.in)
		if strings.Join(opts, " ") != tc.opts || strings.Join(cmd, " ") != tc.command {
			t.Errorf("splitSSHArgs(%q) = %q, %q", tc.in, opts, cmd)
		}
	}
	got := strings.Join(sshArgs("pi-1", "ops", "2200", []string{"-v", "uptime"}), " ")
	if got != "-p 2200 -o HostKeyAlias=pi-1 -l ops -v 127.0.0.1 uptime" {
		t.Errorf("sshArgs = %q", got)
	}
}

func TestSSHTunnelClosedWhileWaiting(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	api := testAPI(t, e)
	done := make(chan result, 1)
	go func() {
		done <- runCLI(t, nil, "ssh", "absent", "--endpoint", e.APIURL(), "--data-endpoint", e.DataEndpoint(),
			"--ca-file", e.CAFile(), "--wait", "60s")
	}()
	var id string
	waitFor(t, "tunnelctl ssh to open its tunnel", 10*time.Second, func() bool {
		l, err := api.ListAllTunnels(context.Background(), "absent", 0)
		if err == nil && len(l) == 1 {
			id = l[0].TunnelID
		}
		return id != ""
	})
	if err := api.CloseTunnel(context.Background(), &awsapi.CloseTunnelInput{TunnelID: id}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		// Closed before or after our side connected: refused (closed) or ended by the service.
		if r.code != ExitFailure || !strings.Contains(r.stderr, "tunnelctl ssh: source proxy:") || !strings.Contains(r.stderr, "closed") {
			t.Errorf("exit %d\n%s", r.code, r.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("tunnelctl ssh kept waiting after the tunnel was closed")
	}
}

func TestSSHUntrustedDataEndpoint(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	// No --ca-file: the emulator's certificate is not trusted by the system roots.
	// The wait is long enough for a TLS handshake to fail (the hint needs its
	// error) on a loaded machine.
	r := runCLI(t, nil, "ssh", "pi-x", "--endpoint", e.APIURL(), "--data-endpoint", e.DataEndpoint(), "--wait", "10s")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "could not connect to the tunnel data endpoint") ||
		!strings.Contains(r.stderr, "--ca-file") || !strings.Contains(r.stderr, "Closed tunnel") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
}

// TestDemoWithSSHD runs the interactive demo with a real sshd as the device's SSH
// service and logs in through the demo's proxy port, as its instructions say.
func TestDemoWithSSHD(t *testing.T) {
	sshd := startSSHD(t, "demo-device")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string]string, 1)
	done := make(chan result, 1)
	var out, errb tunneltest.SyncBuffer
	go func() {
		a := &App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" },
			onProxyReady: func(m map[string]string) { ready <- m }}
		done <- result{a.Run(ctx, []string{"demo", "--ssh-port", "0", "--http-port", "0", "--ssh-target", sshd.addr}), "", ""}
	}()
	var addrs map[string]string
	select {
	case addrs = <-ready:
	case r := <-done:
		cancel()
		t.Fatalf("demo ended: %d\n%s\n%s", r.code, out.String(), errb.String())
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatal("demo not ready within 30s")
	}
	_, port, _ := net.SplitHostPort(addrs["SSH"])
	if !strings.Contains(out.String(), "ssh -p "+port) {
		t.Errorf("instructions lack ssh -p %s:\n%s", port, out.String())
	}
	args := append([]string{"-p", port, "-o", "HostKeyAlias=demo-device", "-l", sshd.user}, sshd.sshArgs("127.0.0.1", "echo", "via-demo")...)
	got, err := exec.Command("ssh", args...).CombinedOutput()
	cancel()
	r := <-done
	if err != nil || string(got) != "via-demo\n" {
		t.Errorf("ssh through the demo: %v\n%s", err, got)
	}
	if r.code != 0 {
		t.Errorf("demo exit %d after Ctrl-C:\n%s", r.code, errb.String())
	}
}
