package cli

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/cmd/tunnelctl/internal/localproxy"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// caDir returns a -c directory: the emulator's CA under an OpenSSL hash-like
// name, a link to it, a file that is not PEM and a subdirectory.
func caDir(t *testing.T, e *emulator.Emulator) string {
	t.Helper()
	dir := t.TempDir()
	pem, err := os.ReadFile(e.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"5ed36f99.0": pem, "notes.txt": []byte("not a certificate")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("5ed36f99.0", filepath.Join(dir, "emulator.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// listenLineRe is how scripts read the source mode's stdout (scripts/bench).
var listenLineRe = regexp.MustCompile(`^([A-Za-z0-9:_-]+): listening on (\S+)`)

// startBackground runs argv in-process, for a destination that prints nothing.
func startBackground(env map[string]string, argv []string) *proxyRun {
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxyRun{cancel: cancel, done: make(chan result, 1)}
	var out, errb tunneltest.SyncBuffer
	a := &App{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}
	go func() {
		code := a.Main(ctx, argv)
		p.done <- result{code, out.String(), errb.String()}
	}()
	return p
}

// waitClosed waits for a proxy to exit by itself after CloseTunnel.
func (p *proxyRun) waitClosed(t *testing.T, side string) result {
	t.Helper()
	select {
	case r := <-p.done:
		if r.code != 0 || !strings.Contains(r.stderr, "closed by the service") {
			t.Errorf("%s after CloseTunnel: exit %d\n%s", side, r.code, r.stderr)
		}
		return r
	case <-time.After(15 * time.Second):
		p.cancel()
		<-p.done
		t.Fatalf("%s kept running after CloseTunnel", side)
	}
	return result{}
}

func TestLocalproxyEndToEnd(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	api := testAPI(t, e)
	echo := tunneltest.Echo(t)
	startAgent(t, e, "lp-agent", map[string]string{"SSH": echo})
	ep, capath := e.DataEndpoint(), caDir(t, e)
	_, echoPort, _ := net.SplitHostPort(echo)

	tests := []struct {
		name  string
		thing string   // lp-agent: the tunnel agent is the destination
		dst   []string // else the argv of a destination localproxy
		src   []string // argv of the source: localproxy or tunnelctl proxy
		label string   // service name on the source's stdout line
	}{
		{"source via argv0", "lp-agent", nil,
			[]string{"/usr/bin/localproxy", "-s", "SSH=0", "-e", ep, "-c", capath}, "SSH"},
		{"source V1", "lp-agent", nil,
			[]string{"tunnelctl", "localproxy", "--source-listen-port=SSH=0", "--proxy-endpoint=" + ep, "--capath", capath, "-y", "V1", "-v", "5", "-b", "127.0.0.1"}, "SSH"},
		{"destination", "lp-device",
			[]string{"localproxy", "-d", "SSH=" + echo, "-e", ep, "-c", capath, "-v", "2"},
			[]string{"tunnelctl", "proxy", "--services", "SSH=0", "--endpoint", ep, "--ca-file", e.CAFile()}, "SSH"},
		{"destination to source localproxy", "lp-device",
			[]string{"tunnelctl", "localproxy", "--destination-app", "SSH=" + echo, "-e", ep, "-c", capath, "-m", "dst"},
			[]string{"localproxy", "-s", "SSH=0", "-e", ep, "-c", capath, "-m", "src"}, "SSH"},
		{"source unnamed (V1 format)", "lp-agent", nil,
			[]string{"localproxy", "-s", "0", "-e", ep, "-c", capath}, unnamedLabel},
		{"device client form", "lp-device",
			[]string{"localproxy", "-e", ep, "-c", capath, "-d", "localhost:" + echoPort, "--destination-client-type", "V1", "-v", "2"},
			[]string{"tunnelctl", "proxy", "--services", "SSH=0", "--endpoint", ep, "--ca-file", e.CAFile(), "--destination-client-type", "V1"}, "SSH"},
		{"unnamed on both ends, V1 source", "lp-device",
			[]string{"localproxy", "-e", ep, "-c", capath, "-d", echoPort},
			[]string{"localproxy", "-s", "0", "-b", "127.0.0.1", "-y", "V1", "-e", ep, "-c", capath}, unnamedLabel},
	}
	var lastSourceToken string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open, err := api.OpenTunnel(context.Background(), &awsapi.OpenTunnelInput{
				DestinationConfig: &awsapi.DestinationConfig{ThingName: tc.thing, Services: []string{"SSH"}}})
			if err != nil {
				t.Fatal(err)
			}
			lastSourceToken = open.SourceAccessToken
			var dst *proxyRun
			if tc.dst != nil {
				dst = startBackground(map[string]string{localproxy.EnvAccessToken: open.DestinationAccessToken}, tc.dst)
				defer dst.cancel()
			}
			src := startListening(t, map[string]string{localproxy.EnvAccessToken: open.SourceAccessToken}, tc.src)
			defer src.cancel()
			addr := src.addrs[sortedKeys(src.addrs)[0]]
			waitDestination(t, api, open.TunnelID)
			for round := range 2 {
				if err := roundTrip(t, addr, 256<<10); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
			}
			if err := api.CloseTunnel(context.Background(), &awsapi.CloseTunnelInput{TunnelID: open.TunnelID}); err != nil {
				t.Fatal(err)
			}
			r := src.waitClosed(t, "source")
			m := listenLineRe.FindStringSubmatch(r.stdout)
			if m == nil || m[1] != tc.label || m[2] != addr || strings.Count(r.stdout, "\n") != 1 {
				t.Errorf("source stdout %q: want one line %q", r.stdout, tc.label+": listening on "+addr)
			}
			all := r.stdout + r.stderr
			if dst != nil {
				d := dst.waitClosed(t, "destination")
				all += d.stdout + d.stderr
			}
			if strings.Contains(all, open.SourceAccessToken) || strings.Contains(all, open.DestinationAccessToken) {
				t.Error("an access token appears in the output")
			}
		})
	}
	// The used token of a closed tunnel is refused: exit 1 with one line.
	r := runCLI(t, map[string]string{localproxy.EnvAccessToken: lastSourceToken}, "localproxy", "-s", "0", "-e", ep, "-c", capath, "-v", "0")
	r.oneLineErr(t, ExitFailure, "tunnelctl localproxy: source proxy: tunnel service rejected the connection")
	if strings.Contains(r.stderr, lastSourceToken) {
		t.Error("the refused token appears in the error")
	}
}

// TestLocalproxyInterrupt: cancelling (SIGINT, SIGTERM) ends localproxy with
// exit 0, here while the WebSocket handshake hangs on a silent endpoint.
func TestLocalproxyInterrupt(t *testing.T) {
	e := startEmulator(t, emulator.Config{})
	capath := caDir(t, e)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	})
	defer wg.Wait()
	defer silent.Close()
	env := map[string]string{localproxy.EnvAccessToken: "x"}
	for _, argv := range [][]string{
		{"localproxy", "-s", "SSH=0", "-e", silent.Addr().String(), "-c", capath, "-v", "0"},
		{"localproxy", "-d", "22", "-e", silent.Addr().String(), "-c", capath, "-v", "0"},
	} {
		p := startBackground(env, argv)
		select {
		case c := <-accepted: // the proxy is inside its handshake
			defer c.Close()
		case <-time.After(10 * time.Second):
			t.Fatalf("%v did not dial the endpoint", argv)
		}
		if r := p.stop(t); r.code != 0 || r.stderr != "" {
			t.Errorf("%v after cancel: exit %d, stderr %q", argv, r.code, r.stderr)
		}
	}
}

// TestLocalproxyHTTPSProxyEnv runs localproxy in a child process (the proxy
// function reads the environment once per process) with https_proxy or
// HTTPS_PROXY set and checks that it connects through that proxy.
func TestLocalproxyHTTPSProxyEnv(t *testing.T) {
	for _, name := range []string{"https_proxy", "HTTPS_PROXY"} {
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 1)
			var wg sync.WaitGroup
			wg.Go(func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				lines <- strings.TrimSpace(line)
			})
			defer wg.Wait()
			defer ln.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^TestLocalproxyChildProcess$")
			for _, kv := range os.Environ() {
				if k, _, _ := strings.Cut(kv, "="); !strings.EqualFold(k, "https_proxy") && !strings.EqualFold(k, "no_proxy") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, name+"=http://"+ln.Addr().String(), "LOCALPROXY_CHILD=1", localproxy.EnvAccessToken+"=x")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			select {
			case line := <-lines:
				if want := "CONNECT data.tunneling.iot.us-east-1.amazonaws.com:443 HTTP/1.1"; line != want {
					t.Errorf("the proxy got %q, want %q", line, want)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("localproxy did not connect through %s", name)
			}
		})
	}
}

// TestLocalproxyChildProcess is the child of TestLocalproxyHTTPSProxyEnv.
func TestLocalproxyChildProcess(t *testing.T) {
	if os.Getenv("LOCALPROXY_CHILD") != "1" {
		t.Skip("runs as the child process of TestLocalproxyHTTPSProxyEnv")
	}
	Main(context.Background(), []string{"localproxy", "-r", "us-east-1", "-s", "SSH=0", "-b", "127.0.0.1", "-v", "0"}, "test", io.Discard, io.Discard)
}
