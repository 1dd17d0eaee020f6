package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

var (
	builtOnce sync.Once
	builtPath string
	builtErr  error
)

// tunnelctlBinary builds the real tunnelctl once per test run: ssh starts it as
// its ProxyCommand, and connect starts it again as the tunnel holder.
func tunnelctlBinary(t *testing.T) string {
	t.Helper()
	builtOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tunnelctl-bin")
		if err != nil {
			builtErr = err
			return
		}
		builtPath = filepath.Join(dir, "tunnelctl")
		out, err := exec.Command("go", "build", "-o", builtPath, "github.com/tunnel-agent/tunnel-agent/cmd/tunnelctl").CombinedOutput()
		if err != nil {
			builtErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if builtErr != nil {
		t.Fatal(builtErr)
	}
	return builtPath
}

// connectRig is a real sshd behind a real tunnel-agent and the emulator, and an
// ssh config whose ProxyCommand is the real tunnelctl connect.
type connectRig struct {
	bin, cfg, cache, thing, host string
	env                          []string
	api                          *awsapi.Client
	e                            *emulator.Emulator
	remote                       string // a directory the remote side writes to
	sshdAddr                     string
}

func newConnectRig(t *testing.T, thing string, idle time.Duration) *connectRig {
	t.Helper()
	isolateAWS(t)
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not installed (Debian package openssh-client)")
	}
	r := &connectRig{thing: thing, host: thing + ".tunnel", bin: tunnelctlBinary(t)}
	sshd := startSSHD(t, r.host)
	r.sshdAddr = sshd.addr
	r.e = startEmulator(t, emulator.Config{})
	startAgent(t, r.e, thing, map[string]string{"SSH": sshd.addr})
	r.api = testAPI(t, r.e)
	cache, err := os.MkdirTemp("", "tc") // short: the holder's socket path must fit in ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(cache) })
	r.cache = cache
	r.env = append(os.Environ(), EnvCacheDir+"="+cache)
	r.remote = t.TempDir()

	// The block tunnelctl ssh-config prints, with the test's keys and a short idle grace.
	out := r.run(t, "--endpoint", r.e.APIURL(), "--data-endpoint", r.e.DataEndpoint(), "--ca-file", r.e.CAFile(), "ssh-config", "--user", sshd.user)
	block := strings.Replace(out, " connect %n", fmt.Sprintf(" connect --idle-close %s %%n", idle), 1)
	block += fmt.Sprintf("    IdentityFile %s\n    IdentitiesOnly yes\n    BatchMode yes\n    StrictHostKeyChecking yes\n"+
		"    UserKnownHostsFile %s\n    LogLevel ERROR\n", sshd.clientKey, sshd.knownHosts)
	r.cfg = filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(r.cfg, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stopHolders(t) })
	return r
}

// run runs the tunnelctl binary and returns its stdout.
func (r *connectRig) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Env = r.env
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("tunnelctl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

// ssh returns an ssh (or scp, rsync) command through the rig's config.
func (r *connectRig) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = r.env
	return cmd
}

// openTunnels lists the thing's tunnels with the real `tunnelctl list` and counts the open ones.
func (r *connectRig) openTunnels(t *testing.T) (open, all int) {
	t.Helper()
	out := r.run(t, "--endpoint", r.e.APIURL(), "list", "--thing", r.thing)
	for _, line := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 {
			all++
			if f[1] == awsapi.StatusOpen {
				open++
			}
		}
	}
	return open, all
}

// stopHolders ends holder processes the test left (by their socket's lock owner: pkill-free).
func (r *connectRig) stopHolders(t *testing.T) {
	waitFor(t, "the holder to close the idle tunnel", 30*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(r.cache, "*.sock"))
		return len(m) == 0
	})
}

// timeToFirstByte runs ssh [opts] HOST echo and returns when its first output byte came.
func (r *connectRig) timeToFirstByte(t *testing.T, opts ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ttfb, wait := r.startSSH(t, ctx, "", opts...)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	return ttfb
}

// startSSH runs ssh [opts] HOST 'echo first-byte; ...', where the rest of the
// remote command waits until the file release exists (no wait for ""). It
// returns when the first output line came, with the time it took, and a wait
// for ssh's end that reports its failure.
func (r *connectRig) startSSH(t *testing.T, ctx context.Context, release string, opts ...string) (time.Duration, func() error) {
	t.Helper()
	remote := "echo first-byte"
	if release != "" {
		remote += fmt.Sprintf("; while [ ! -e %s ]; do sleep 0.1; done", release)
	}
	args := append(append([]string{"-F", r.cfg}, opts...), r.host, remote)
	cmd := r.cmd(ctx, "ssh", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr tunneltest.SyncBuffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	ttfb := time.Since(start)
	if line != "first-byte\n" {
		werr := cmd.Wait()
		t.Fatalf("ssh %s %q: %q %v %v\n%s", r.host, remote, line, err, werr, stderr.String())
	}
	return ttfb, func() error {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("ssh %s %q: %w\n%s", r.host, remote, err, stderr.String())
		}
		return nil
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func randomFile(t *testing.T, path string, size int) {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestConnectSSHScpRsync runs real ssh, scp and rsync through ProxyCommand
// tunnelctl connect to a real sshd behind tunnel-agent and the emulator: eight
// parallel ssh sessions share one tunnel, files come back with the same SHA-256,
// and the tunnel is closed after the idle grace.
func TestConnectSSHScpRsync(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs OpenSSH and sshd on Linux")
	}
	r := newConnectRig(t, "pi-conn", 5*time.Second)

	// The first ssh opens the tunnel and keeps its session (and so the tunnel)
	// until the holder is killed below: the steps in between share the tunnel
	// whatever time they take, and the idle grace only runs at the end. (With
	// the grace running between the steps, a slow ssh on a loaded machine let
	// the holder close the tunnel and the next step open a second one.)
	kctx, stopKeeper := context.WithTimeout(context.Background(), 10*time.Minute)
	releaseKeeper := filepath.Join(r.remote, "release-keeper")
	cold, keeperWait := r.startSSH(t, kctx, releaseKeeper)
	keeperEnded := make(chan struct{})
	// It fails when its holder is killed. The cleanup runs before the rig's,
	// which waits for the idle close.
	go func() { _ = keeperWait(); close(keeperEnded) }()
	t.Cleanup(func() { stopKeeper(); <-keeperEnded })
	warm := r.timeToFirstByte(t)
	direct := r.timeToFirstByte(t, "-o", "ProxyCommand=none", "-o", "Hostname=127.0.0.1", "-o", "HostKeyAlias="+r.host, "-p", portOf(r.sshdAddr))
	t.Logf("time to first byte of ssh via ProxyCommand: new tunnel %s, reused tunnel %s, direct to sshd %s "+
		"(new/reused %.2fx, reused/direct %.2fx)", cold.Round(time.Millisecond), warm.Round(time.Millisecond),
		direct.Round(time.Millisecond), float64(cold)/float64(warm), float64(warm)/float64(direct))

	// The state file holds the source token: 0600, and no token in the log.
	states, _ := filepath.Glob(filepath.Join(r.cache, "*.json"))
	if len(states) != 1 {
		t.Fatalf("state files %v, want one", states)
	}
	if st, err := os.Stat(states[0]); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("state file %s: mode %v %v, want 0600", states[0], st.Mode(), err)
	}

	t.Run("8 parallel ssh share one tunnel", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		const n = 8
		var wg sync.WaitGroup
		errs := make(chan error, n)
		started := make(chan struct{}, n)
		release := filepath.Join(r.remote, "release")
		for i := range n {
			wg.Go(func() {
				cmd := r.cmd(ctx, "ssh", "-F", r.cfg, r.host,
					fmt.Sprintf("echo started; while [ ! -e %s ]; do sleep 0.1; done; echo done-%d", release, i))
				stdout, _ := cmd.StdoutPipe()
				var stderr strings.Builder
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					errs <- err
					return
				}
				out, _ := io.ReadAll(io.TeeReader(stdout, notifyOn("started\n", started)))
				if err := cmd.Wait(); err != nil || string(out) != fmt.Sprintf("started\ndone-%d\n", i) {
					errs <- fmt.Errorf("ssh %d: %v %q %s", i, err, out, stderr.String())
				}
			})
		}
		for range n {
			select {
			case <-started:
			case <-ctx.Done():
				t.Fatal("the 8 ssh sessions did not all start")
			}
		}
		open, all := r.openTunnels(t) // all 8 sessions are live now
		if open != 1 || all != 1 {
			t.Errorf("tunnelctl list: %d open of %d tunnels while 8 ssh sessions run, want exactly 1 of 1", open, all)
		}
		randomFile(t, release, 1)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("scp", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "up.bin")
		randomFile(t, src, 3<<20)
		remote := filepath.Join(r.remote, "scp.bin")
		back := filepath.Join(t.TempDir(), "down.bin")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, args := range [][]string{{src, r.host + ":" + remote}, {r.host + ":" + remote, back}} {
			if out, err := r.cmd(ctx, "scp", append([]string{"-F", r.cfg, "-q"}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("scp %v: %v\n%s", args, err, out)
			}
		}
		if a, b, c := sha256File(t, src), sha256File(t, remote), sha256File(t, back); a != b || a != c {
			t.Errorf("SHA-256 differ: sent %s, remote %s, back %s", a, b, c)
		}
	})

	t.Run("rsync", func(t *testing.T) {
		if _, err := exec.LookPath("rsync"); err != nil {
			t.Skip("rsync not installed (Debian package rsync)")
		}
		src := t.TempDir()
		for i, size := range []int{0, 1, 4096, 1 << 20, 2<<20 + 7} {
			randomFile(t, filepath.Join(src, fmt.Sprintf("f%d", i)), size)
		}
		dst := filepath.Join(r.remote, "rsync")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := r.cmd(ctx, "rsync", "-a", "-e", "ssh -F "+r.cfg, src+"/", r.host+":"+dst+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("rsync: %v\n%s", err, out)
		}
		entries, _ := os.ReadDir(src)
		for _, e := range entries {
			if a, b := sha256File(t, filepath.Join(src, e.Name())), sha256File(t, filepath.Join(dst, e.Name())); a != b {
				t.Errorf("%s: SHA-256 %s sent, %s received", e.Name(), a, b)
			}
		}
	})

	t.Run("a killed holder is replaced and resumes the tunnel", func(t *testing.T) {
		b, err := os.ReadFile(states[0])
		if err != nil {
			t.Fatal(err)
		}
		var st tunnelState
		if err := json.Unmarshal(b, &st); err != nil || st.PID == 0 {
			t.Fatalf("state %s: %v", b, err)
		}
		p, err := os.FindProcess(st.PID)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("killing holder %d: %v", st.PID, err)
		}
		hold := strings.TrimSuffix(states[0], ".json") + ".hold"
		waitFor(t, "the killed holder's lock to be free", 10*time.Second, func() bool {
			l, err := tryLockFile(hold) // a dead process holds no lock, even while a zombie
			if l != nil {
				l.release()
			}
			return err == nil && l != nil
		})
		r.timeToFirstByte(t)
		b, _ = os.ReadFile(states[0])
		var st2 tunnelState
		if err := json.Unmarshal(b, &st2); err != nil || st2.TunnelID != st.TunnelID || st2.PID == st.PID {
			t.Errorf("after the kill: state %+v, want tunnel %s held by a new process", st2, st.TunnelID)
		}
	})

	randomFile(t, releaseKeeper, 1) // in case the holder kill did not end it
	<-keeperEnded
	if _, all := r.openTunnels(t); all != 1 {
		t.Errorf("%d tunnels opened for ssh, 8 parallel ssh, scp, rsync and a holder restart; want 1", all)
	}
	logs, _ := filepath.Glob(filepath.Join(r.cache, "*.log"))
	b, _ := os.ReadFile(logs[0])
	st, _ := os.ReadFile(states[0])
	if tok := tokenIn(string(st)); tok == "" || strings.Contains(string(b), tok) {
		t.Errorf("the holder log holds the source token (or the state has none)")
	}
	// After the idle grace the holder closes the tunnel and removes its socket and state.
	waitFor(t, "the idle tunnel to be closed", 30*time.Second, func() bool {
		open, _ := r.openTunnels(t)
		return open == 0
	})
	r.stopHolders(t)
	if _, err := os.Stat(states[0]); !os.IsNotExist(err) {
		t.Errorf("state file left after the idle close: %v", err)
	}
}

// tokenIn returns the source token of a state file's content.
func tokenIn(state string) string {
	_, rest, ok := strings.Cut(state, `"sourceAccessToken":"`)
	if !ok {
		return ""
	}
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}

// notifyOn is a writer that signals ch once when the text written so far contains s.
func notifyOn(s string, ch chan<- struct{}) io.Writer {
	return &notifier{s: s, ch: ch}
}

type notifier struct {
	s    string
	buf  strings.Builder
	ch   chan<- struct{}
	sent bool
}

func (n *notifier) Write(p []byte) (int, error) {
	n.buf.Write(p)
	if !n.sent && strings.Contains(n.buf.String(), n.s) {
		n.sent = true
		n.ch <- struct{}{}
	}
	return len(p), nil
}

// TestConnectDeviceAbsent: connect to a thing whose agent never answers fails
// with the holder's reason on stderr, exit 1, and leaves no tunnel open.
func TestConnectDeviceAbsent(t *testing.T) {
	isolateAWS(t)
	bin := tunnelctlBinary(t)
	e := startEmulator(t, emulator.Config{})
	cache, err := os.MkdirTemp("", "tc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(cache)
	cmd := exec.Command(bin, "--endpoint", e.APIURL(), "--data-endpoint", e.DataEndpoint(), "--ca-file", e.CAFile(),
		"connect", "--wait", "10s", "nobody-home") // long enough for the holder's source side to connect on a loaded machine
	cmd.Env = append(os.Environ(), EnvCacheDir+"="+cache)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != ExitFailure ||
		!strings.Contains(stderr.String(), "nobody-home did not connect within 10s") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("connect to an absent thing: %v\n%s", err, stderr.String())
	}
	list, err := testAPI(t, e).ListAllTunnels(context.Background(), "nobody-home", 0)
	if err != nil || len(list) != 1 || list[0].Status != awsapi.StatusClosed {
		t.Errorf("tunnels after the failure: %+v %v, want one CLOSED", list, err)
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "*.json")); len(m) != 0 {
		t.Errorf("state left: %v", m)
	}
}
