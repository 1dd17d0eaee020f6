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
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// child is an emulator in a separate process: the test binary re-executed
// with TUNNEL_EMULATOR_TEST_CHILD (see TestMain), so that it can be killed
// with SIGKILL and its memory measured.
type child struct {
	cmd             *exec.Cmd
	stdin           io.WriteCloser
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
	raw, _ := json.Marshal(cc)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TUNNEL_EMULATOR_TEST_CHILD="+string(raw), "GOMAXPROCS=2")
	c := &child{cmd: cmd, stderr: &tunneltest.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() { c.stop(t) })
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line := <-ready:
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "READY" {
			t.Fatalf("child emulator did not start: %q\n%s", line, c.stderr.String())
		}
		c.api, c.data, c.mqtt = f[1], f[2], f[3]
	case <-time.After(30 * time.Second):
		t.Fatalf("child emulator not ready:\n%s", c.stderr.String())
	}
	return c
}

// stop ends the child gracefully (stdin closed), or kills it.
func (c *child) stop(t *testing.T) {
	_ = c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		t.Errorf("child emulator did not stop on stdin EOF")
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
