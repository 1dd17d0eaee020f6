package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// proxyRun is a `tunnelctl proxy` running in-process.
type proxyRun struct {
	addrs  map[string]string
	cancel context.CancelFunc
	done   chan result
}

func startProxyCLI(t *testing.T, env map[string]string, args ...string) *proxyRun {
	t.Helper()
	return startListening(t, env, append([]string{"tunnelctl", "proxy"}, args...))
}

// startListening runs argv (program name first) in-process until the proxy
// it starts is listening.
func startListening(t *testing.T, env map[string]string, argv []string) *proxyRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string]string, 1)
	p := &proxyRun{cancel: cancel, done: make(chan result, 1)}
	var out, errb tunneltest.SyncBuffer
	a := &App{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] },
		onProxyReady: func(m map[string]string) { ready <- m }}
	go func() {
		code := a.Main(ctx, argv)
		p.done <- result{code, out.String(), errb.String()}
	}()
	select {
	case p.addrs = <-ready:
	case r := <-p.done:
		cancel()
		t.Fatalf("proxy exited %d before listening: %s", r.code, r.stderr)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("proxy did not start listening")
	}
	return p
}

func (p *proxyRun) stop(t *testing.T) result {
	t.Helper()
	p.cancel()
	select {
	case r := <-p.done:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("proxy did not stop within 15s of cancel")
	}
	return result{}
}

// roundTrip sends size random bytes through addr (an echo behind the tunnel) and
// checks what comes back. It keeps at most 32 KiB in flight: the protocol has no
// flow control.
func roundTrip(t *testing.T, addr string, size int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, size)
	_, _ = rand.Read(data)
	got := make([]byte, 0, size)
	buf := make([]byte, 64<<10)
	for off := 0; off < size; {
		end := min(off+32<<10, size)
		if _, err := c.Write(data[off:end]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		off = end
		for len(got) < off {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				return fmt.Errorf("read after %d of %d bytes: %w", len(got), size, err)
			}
		}
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		return fmt.Errorf("echoed data differs")
	}
	return nil
}

func TestProxyWithAgent(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	api := testAPI(t, e)
	echoA, echoB := tunneltest.Echo(t), tunneltest.Echo(t)
	startAgent(t, e, "pi-1", map[string]string{"SSH": echoA, "HTTP": echoB})
	tokenDir := t.TempDir()

	tests := []struct {
		clientType string
		services   []string
		conns      int // simultaneous connections per service
	}{
		{"", []string{"SSH", "HTTP"}, 4},
		{"V3", []string{"SSH", "HTTP"}, 2},
		{"V2", []string{"SSH", "HTTP"}, 1},
		{"V1", []string{"SSH"}, 1},
	}
	for _, tc := range tests {
		t.Run("type="+tc.clientType+"/"+strings.Join(tc.services, "+"), func(t *testing.T) {
			open, err := api.OpenTunnel(context.Background(), &awsapi.OpenTunnelInput{
				DestinationConfig: &awsapi.DestinationConfig{ThingName: "pi-1", Services: tc.services}})
			if err != nil {
				t.Fatal(err)
			}
			tokFile := filepath.Join(tokenDir, open.TunnelID)
			if err := os.WriteFile(tokFile, []byte(open.SourceAccessToken+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			spec := make([]string, len(tc.services))
			for i, s := range tc.services {
				spec[i] = s + "=0"
			}
			p := startProxyCLI(t, nil, "--services", strings.Join(spec, ","), "--endpoint", e.DataEndpoint(),
				"--ca-file", e.CAFile(), "--token-file", tokFile, "--destination-client-type", tc.clientType)
			waitDestination(t, api, open.TunnelID)
			for round := range 2 { // sequential connections reuse the service
				var wg sync.WaitGroup
				errs := make(chan error, 16)
				for _, svc := range tc.services {
					for range tc.conns {
						wg.Go(func() { errs <- roundTrip(t, p.addrs[svc], 256<<10) })
					}
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Errorf("round %d: %v", round, err)
					}
				}
			}
			r := p.stop(t)
			if r.code != 0 || strings.Contains(r.stderr+r.stdout, open.SourceAccessToken) {
				t.Errorf("proxy exit %d (token leaked: %v)\n%s", r.code, strings.Contains(r.stderr, open.SourceAccessToken), r.stderr)
			}
		})
	}
}

func TestProxyTokenFromEnvAndClose(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	api := testAPI(t, e)
	startAgent(t, e, "pi-2", map[string]string{"SSH": tunneltest.Echo(t)})
	open, err := api.OpenTunnel(context.Background(), &awsapi.OpenTunnelInput{
		DestinationConfig: &awsapi.DestinationConfig{ThingName: "pi-2", Services: []string{"SSH"}}})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AWSIOT_TUNNEL_ACCESS_TOKEN": open.SourceAccessToken}
	// The API URL as --endpoint (before: "give --region or --endpoint host:port") and the data plane apart.
	p := startProxyCLI(t, env, "--services=SSH=0", "--endpoint", e.APIURL(), "--data-endpoint", e.DataEndpoint(), "--ca-file", e.CAFile(), "--json")
	waitDestination(t, api, open.TunnelID)
	if err := roundTrip(t, p.addrs["SSH"], 64<<10); err != nil {
		t.Fatal(err)
	}
	// Closing the tunnel ends the proxy cleanly (exit 0) without a cancel.
	if err := api.CloseTunnel(context.Background(), &awsapi.CloseTunnelInput{TunnelID: open.TunnelID}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-p.done:
		if r.code != 0 || !strings.Contains(r.stderr, "closed by the service") {
			t.Errorf("after CloseTunnel: exit %d\n%s", r.code, r.stderr)
		}
		// --json: stdout is exactly one object naming the listening addresses.
		var got struct{ Services map[string]string }
		r.decode(t, &got)
		if len(got.Services) != 1 || got.Services["SSH"] != p.addrs["SSH"] {
			t.Errorf("--json stdout %q, want services.SSH = %s", r.stdout, p.addrs["SSH"])
		}
	case <-time.After(15 * time.Second):
		p.cancel()
		<-p.done
		t.Fatal("proxy kept running after CloseTunnel")
	}

	// The token was used (and the tunnel is closed): a new proxy is refused with one line.
	r := runCLI(t, env, "proxy", "--services", "SSH=0", "--endpoint", e.DataEndpoint(), "--ca-file", e.CAFile())
	if r.code != ExitFailure || strings.Contains(r.stderr, open.SourceAccessToken) || !strings.Contains(r.stderr, "tunnelctl proxy: source proxy:") {
		t.Errorf("reused token: exit %d\n%s", r.code, r.stderr)
	}
	// The old "--endpoint HOST:PORT" still means the data plane under proxy, with a notice.
	if !strings.Contains(r.stderr, "taking --endpoint "+e.DataEndpoint()+" as --data-endpoint") {
		t.Errorf("no notice for the old --endpoint HOST:PORT:\n%s", r.stderr)
	}
}

func TestProxyUsage(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"token flag", nil, []string{"--token", "abc", "--services", "SSH=2222"}, ExitUsage, "never"},
		{"no token", nil, []string{"--services", "SSH=0", "--region", "us-east-1"}, ExitFailure, "AWSIOT_TUNNEL_ACCESS_TOKEN"},
		{"no services", map[string]string{"AWSIOT_TUNNEL_ACCESS_TOKEN": "x"}, []string{"--region", "us-east-1"}, ExitUsage, "--services is required"},
		{"bare port", nil, []string{"--services", "2222"}, ExitUsage, "SSH=2222"},
		{"bad port", nil, []string{"--services", "SSH=70000"}, ExitUsage, "0-65535"},
		{"no region", map[string]string{"AWSIOT_TUNNEL_ACCESS_TOKEN": "x"}, []string{"--services", "SSH=0"}, ExitUsage, "give --region, --data-endpoint HOST:PORT or the API --endpoint URL"},
		{"bad client type", map[string]string{"AWSIOT_TUNNEL_ACCESS_TOKEN": "x"},
			[]string{"--services", "SSH=0", "--region", "us-east-1", "--destination-client-type", "V9"}, ExitFailure, "tunnelctl proxy:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.env, append([]string{"proxy"}, tc.args...)...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			if r.code != tc.code || !strings.Contains(last, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, tc.code, tc.want)
			}
			if bytes.Contains([]byte(r.stderr), []byte("abc")) {
				t.Errorf("token value echoed: %q", r.stderr)
			}
		})
	}
}

func TestProxyRestartWithClientTokenFile(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	api := testAPI(t, e)
	startAgent(t, e, "pi-3", map[string]string{"SSH": tunneltest.Echo(t)})
	open, err := api.OpenTunnel(context.Background(), &awsapi.OpenTunnelInput{
		DestinationConfig: &awsapi.DestinationConfig{ThingName: "pi-3", Services: []string{"SSH"}}})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AWSIOT_TUNNEL_ACCESS_TOKEN": open.SourceAccessToken}
	ctFile := filepath.Join(t.TempDir(), "client-token")
	args := []string{"--services=SSH=0", "--endpoint", e.DataEndpoint(), "--ca-file", e.CAFile(), "--client-token-file", ctFile}
	for run := range 2 { // the second run reuses the single-use access token with the saved client token
		p := startProxyCLI(t, env, args...)
		waitDestination(t, api, open.TunnelID)
		if err := roundTrip(t, p.addrs["SSH"], 64<<10); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if r := p.stop(t); r.code != 0 {
			t.Fatalf("run %d: exit %d\n%s", run, r.code, r.stderr)
		}
		if st, err := os.Stat(ctFile); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("client token file: %v %v", st, err)
		}
	}
	// Without the client token the used access token is refused.
	r := runCLI(t, env, "proxy", "--services=SSH=0", "--endpoint", e.DataEndpoint(), "--ca-file", e.CAFile())
	if r.code != ExitFailure || !strings.Contains(r.stderr, "client token") {
		t.Errorf("reuse without client token: exit %d\n%s", r.code, r.stderr)
	}
	// After a rotation the saved client token is bound to the old access token;
	// the proxy makes a new one instead of being refused.
	rot, err := api.RotateTunnelAccessToken(context.Background(), &awsapi.RotateTunnelAccessTokenInput{
		TunnelID: open.TunnelID, ClientMode: awsapi.ClientModeSource})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(ctFile)
	env["AWSIOT_TUNNEL_ACCESS_TOKEN"] = rot.SourceAccessToken
	for run := range 2 {
		p := startProxyCLI(t, env, args...)
		waitDestination(t, api, open.TunnelID)
		if err := roundTrip(t, p.addrs["SSH"], 64<<10); err != nil {
			t.Fatalf("rotated run %d: %v", run, err)
		}
		if r := p.stop(t); r.code != 0 {
			t.Fatalf("rotated run %d: exit %d\n%s", run, r.code, r.stderr)
		}
	}
	if now, _ := os.ReadFile(ctFile); bytes.Equal(old, now) {
		t.Error("the client token file was not renewed for the rotated access token")
	}
}

// TestJSONRejected: commands without a JSON output refuse --json instead of
// silently printing text.
func TestJSONRejected(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"ssh", []string{"ssh", "pi-1", "--json"}, "ssh runs an interactive session and has no JSON output"},
		{"demo", []string{"--json", "demo", "--check"}, "demo has no JSON output"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, nil, tc.args...)
			r.oneLineErr(t, ExitUsage, tc.want)
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}
