package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
)

// sshOptsWithValue are the ssh(1) options that take an argument.
const sshOptsWithValue = "BbcDEeFIiJLlmOoPpQRSWw"

// splitSSHArgs separates ssh options from the remote command, following ssh(1)'s
// grammar: options (with their values) come first, the first non-option starts the command.
func splitSSHArgs(args []string) (opts, command []string) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return opts, args[i+1:]
		}
		if len(arg) < 2 || arg[0] != '-' {
			return opts, args[i:]
		}
		opts = append(opts, arg)
		// -p22 carries its value; -p 22 takes the next argument.
		for j := 1; j < len(arg); j++ {
			if strings.IndexByte(sshOptsWithValue, arg[j]) >= 0 {
				if j == len(arg)-1 && i+1 < len(args) {
					i++
					opts = append(opts, args[i])
				}
				break
			}
		}
	}
	return opts, nil
}

// sshArgs builds the ssh command line: our options, the user's, the host, the command.
func sshArgs(thing, user, port string, extra []string) []string {
	opts, command := splitSSHArgs(extra)
	args := []string{"-p", port, "-o", "HostKeyAlias=" + thing}
	if user != "" {
		args = append(args, "-l", user)
	}
	args = append(args, opts...)
	args = append(args, "127.0.0.1")
	return append(args, command...)
}

// sshEnv is the environment for ssh: ours without tunnel secrets.
func sshEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWSIOT_TUNNEL_ACCESS_TOKEN=") && !strings.HasPrefix(kv, "AWSIOT_TUNNEL_CLIENT_TOKEN=") {
			env = append(env, kv)
		}
	}
	return env
}

type sshOptions struct {
	thing, user, clientType, lifetime string
	wait                              time.Duration
	extra                             []string
	data                              dataPlane
}

func (a *App) cmdSSH(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("ssh", a.Stderr, withData)
	var o sshOptions
	fs.StringVar(&o.user, "user", "", "remote user (ssh -l)")
	fs.StringVar(&o.clientType, "destination-client-type", "", "V1 or V2 for old destinations; default automatic")
	fs.StringVar(&o.lifetime, "lifetime", "1h", "tunnel lifetime")
	fs.DurationVar(&o.wait, "wait", 60*time.Second, "how long to wait for the device to connect")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if g.json {
		return usageError("ssh runs an interactive session and has no JSON output: drop --json " +
			"(for scripts use tunnelctl open --json and tunnelctl proxy --json)")
	}
	if len(pos) < 1 {
		return usageError("name the thing: tunnelctl ssh THING [-- ssh args...]")
	}
	o.thing, o.extra = pos[0], pos[1:]
	minutes, err := parseLifetime(o.lifetime)
	if err != nil {
		return err
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	if o.data, err = a.resolveDataPlane(g, c); err != nil {
		return err
	}
	open, err := c.OpenTunnel(ctx, &awsapi.OpenTunnelInput{
		Description:       "tunnelctl ssh " + o.thing,
		DestinationConfig: &awsapi.DestinationConfig{ThingName: o.thing, Services: []string{"SSH"}},
		TimeoutConfig:     &awsapi.TimeoutConfig{MaxLifetimeTimeoutMinutes: minutes},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.Stderr, "Opened tunnel %s to %s.\n", open.TunnelID, o.thing)
	defer a.closeTunnel(c, open.TunnelID)
	return a.sshThrough(ctx, c, open, &o, g.verbose)
}

// closeTunnel closes the tunnel even when ctx was cancelled (Ctrl-C).
func (a *App) closeTunnel(c *awsapi.Client, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.CloseTunnel(ctx, &awsapi.CloseTunnelInput{TunnelID: id}); err != nil {
		fmt.Fprintf(a.Stderr, "tunnelctl ssh: closing tunnel %s failed: %s; close it with `tunnelctl close %s`\n", id, describeError(err), id)
		return
	}
	fmt.Fprintf(a.Stderr, "Closed tunnel %s.\n", id)
}

// sshThrough runs the source proxy on a free loopback port and ssh through it.
func (a *App) sshThrough(ctx context.Context, c *awsapi.Client, open *awsapi.OpenTunnelOutput, o *sshOptions, verbose bool) error {
	watch := &sourceWatch{connected: make(chan struct{}, 1)}
	sess, err := tunnel.New(tunnel.Config{
		Mode: tunnel.ModeSource, Endpoint: o.data.endpoint, Region: o.data.region, AccessToken: open.SourceAccessToken,
		CAFile: o.data.caFile, RootCAs: o.data.roots,
		Services: map[string]string{"SSH": "127.0.0.1:0"}, DestinationClientType: strings.ToUpper(o.clientType),
		Logger: a.quietLogger(verbose), ConnBufferSize: sourceConnBuffer,
		OnEvent: watch.onEvent,
	})
	if err != nil {
		return fmt.Errorf("starting the source proxy: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	ended := &sessionEnd{done: make(chan struct{})}
	go func() { ended.err = sess.Run(ctx); close(ended.done) }()
	defer func() { cancel(); <-ended.done }()

	if err := a.waitForDevice(ctx, c, open.TunnelID, o, watch, ended); err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(sess.Addr("SSH").String())
	return a.execSSH(ctx, sshArgs(o.thing, o.user, port, o.extra))
}

// sourceWatch follows the source session's events while ssh waits for the device.
type sourceWatch struct {
	connected chan struct{}
	mu        sync.Mutex
	lastErr   error
}

func (w *sourceWatch) onEvent(ev tunnel.Event) {
	switch {
	case ev.Kind == tunnel.EventConnected:
		select {
		case w.connected <- struct{}{}:
		default:
		}
	case ev.Err != nil && (ev.Kind == tunnel.EventDisconnected || ev.Kind == tunnel.EventReconnecting):
		w.mu.Lock()
		w.lastErr = ev.Err
		w.mu.Unlock()
	}
}

// timeoutError explains why waiting for the device failed.
func (w *sourceWatch) timeoutError(o *sshOptions, id string, srcUp bool) error {
	if !srcUp {
		w.mu.Lock()
		last := w.lastErr
		w.mu.Unlock()
		if last == nil {
			last = errors.New("no answer")
		}
		hint := ""
		if errors.As(last, new(x509.UnknownAuthorityError)) {
			hint = " (pass the CA that signed it with --ca-file, e.g. the emulator's ca.pem)"
		}
		return fmt.Errorf("could not connect to the tunnel data endpoint %s within %s: %w%s", o.data.endpoint, o.wait, last, hint)
	}
	return fmt.Errorf("%s did not connect within %s: check that its tunnel agent is running and subscribed (tunnelctl describe %s)", o.thing, o.wait, id)
}

// sessionEnd reports the end of a session's Run: err is valid once done is closed.
type sessionEnd struct {
	done chan struct{}
	err  error
}

// waitForDevice waits until our source side is connected and the device has
// connected its destination side (DescribeTunnel), or the session fails.
func (a *App) waitForDevice(ctx context.Context, c *awsapi.Client, id string, o *sshOptions, watch *sourceWatch, ended *sessionEnd) error {
	fmt.Fprintf(a.Stderr, "Waiting up to %s for %s to connect...\n", o.wait, o.thing)
	deadline := time.NewTimer(o.wait)
	defer deadline.Stop()
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	src := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ended.done:
			err := ended.err
			if err == nil {
				err = errors.New("the tunnel was closed by the service")
			}
			return fmt.Errorf("source proxy: %w", err)
		case <-deadline.C:
			return watch.timeoutError(o, id, src)
		case <-watch.connected:
			src = true
		case <-tick.C:
			if !src {
				continue
			}
			d, err := c.DescribeTunnel(ctx, &awsapi.DescribeTunnelInput{TunnelID: id})
			if err != nil {
				return err
			}
			if cs := d.Tunnel.DestinationConnectionState; cs != nil && cs.Status == awsapi.StatusConnected {
				return nil
			}
		}
	}
}

// execSSH runs the system ssh in the foreground and passes its exit code through.
func (a *App) execSSH(ctx context.Context, args []string) error {
	bin := a.SSHPath
	if bin == "" {
		bin = "ssh"
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.Stdin, a.Stdout, a.Stderr
	cmd.Env = sshEnv()
	cmd.Cancel = func() error { return terminate(cmd.Process) }
	cmd.WaitDelay = 3 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return &exitCodeError{code: ee.ExitCode()}
	}
	return fmt.Errorf("running %s: %w", bin, err)
}

// quietLogger logs warnings only, unless verbose, so ssh owns the terminal.
func (a *App) quietLogger(verbose bool) *slog.Logger {
	lvl := slog.LevelWarn
	if verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: lvl}))
}
