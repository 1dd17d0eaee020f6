package emulator_test

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// child is the tunnel-emulator program in a separate process (built by
// emulator.EmulatorBinary, without the race detector), so that it can be
// killed with SIGKILL and its memory measured.
type child struct {
	cmd             *exec.Cmd
	stderr          *tunneltest.SyncBuffer
	api, data, mqtt string // http://host:port, host:port, host:port
	exited          chan struct{}
}

type childConfig struct {
	StateDir, APIAddr, DataAddr, MQTTAddr string
	Credentials                           map[string]string
	MaxOpenTunnels                        int
	APIReadTimeout                        time.Duration
}

func startChild(t *testing.T, cc childConfig) *child {
	t.Helper()
	args := []string{"--state-dir", cc.StateDir, "--api-addr", cc.APIAddr, "--data-addr", cc.DataAddr, "--mqtt-addr", cc.MQTTAddr}
	if cc.MaxOpenTunnels > 0 {
		args = append(args, "--max-open-tunnels", strconv.Itoa(cc.MaxOpenTunnels))
	}
	if cc.APIReadTimeout > 0 {
		args = append(args, "--api-read-timeout", cc.APIReadTimeout.String())
	}
	if cc.Credentials != nil {
		var b strings.Builder
		for k, v := range cc.Credentials {
			fmt.Fprintf(&b, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", k, k, v)
		}
		f := filepath.Join(t.TempDir(), "credentials")
		if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--credentials", f)
	}
	cmd := exec.Command(emulator.EmulatorBinary(t), args...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	c := &child{cmd: cmd, stderr: &tunneltest.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() { c.stop(t) })
	ready := make(chan map[string]string, 1)
	go func() {
		// The endpoint lines, up to "API auth:", the last one.
		lines := map[string]string{}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			if f := strings.Fields(v); len(f) > 0 {
				lines[k] = f[0]
			}
			if k == "API auth" {
				break
			}
		}
		ready <- lines
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-ready:
		c.api, c.data, c.mqtt = l["API endpoint"], l["Data endpoint"], l["MQTT broker"]
		if c.api == "" || c.data == "" || c.mqtt == "" {
			t.Fatalf("tunnel-emulator did not start: %v\n%s", l, c.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("tunnel-emulator not ready:\n%s", c.stderr.String())
	}
	return c
}

// stop ends the child with SIGTERM (or SIGKILL after 10 s).
func (c *child) stop(t *testing.T) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		t.Errorf("tunnel-emulator did not stop on SIGTERM")
	}
}

// kill9 sends SIGKILL and waits for the process to end.
func (c *child) kill9(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.exited
}

// memKiB reads a field (VmRSS, VmHWM) of /proc/PID/status in KiB.
func (c *child) memKiB(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatalf("%s not in /proc status", field)
	return 0
}

func caPool(t *testing.T, stateDir string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal("ca.pem holds no certificate")
	}
	return p
}

// call sends one signed API call to a child and returns status and body.
func (c *child) call(t *testing.T, client *http.Client, op, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.api+"/", strings.NewReader(body))
	req.Header.Set("X-Amz-Target", "IoTSecuredTunneling."+op)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if err := emulator.SignRequest(req, []byte(body), "AKIDCHILD", "child-secret", emulator.DefaultRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.NewDecoder(bytes.NewReader(b)).Decode(&out)
	return resp.StatusCode, out
}
