package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
)

// connectOptions are the flags connect hands on to its tunnel holder.
type connectOptions struct {
	lifetime   string
	idle, wait time.Duration
	clientType string
}

func (o *connectOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.lifetime, "lifetime", "12h", "lifetime of a tunnel connect opens (it is closed earlier when idle)")
	fs.DurationVar(&o.idle, "idle-close", 30*time.Second, "close the shared tunnel this long after its last connection ended")
	fs.DurationVar(&o.wait, "wait", 60*time.Second, "how long to wait for the device to connect")
	fs.StringVar(&o.clientType, "destination-client-type", "", "V1 or V2 for old destinations; default automatic (V3: many connections per tunnel)")
}

// connectTarget parses "THING [SERVICE]". THING may be an ssh host alias such as
// pi-1.tunnel (ssh's %n): thing names cannot contain a dot, so the name ends at
// the first one.
func connectTarget(pos []string) (thing, service string, err error) {
	if len(pos) < 1 || len(pos) > 2 {
		return "", "", usageError("give THING [SERVICE], e.g. tunnelctl connect pi-1 SSH")
	}
	thing, _, _ = strings.Cut(pos[0], ".")
	if thing == "" {
		return "", "", usageError("thing %q: empty name", pos[0])
	}
	service = "SSH"
	if len(pos) == 2 {
		service = pos[1]
	}
	return thing, service, nil
}

// cmdConnect joins stdin/stdout to one connection of a service on a thing,
// through the tunnel shared by every connect of the same user, thing and
// service: the first one starts a holder process that opens (or resumes) the
// tunnel; the others attach to the holder's socket.
func (a *App) cmdConnect(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("connect", a.Stderr, withData)
	var o connectOptions
	o.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if g.json {
		return usageError("connect carries a byte stream on stdout and has no JSON output: drop --json")
	}
	thing, service, err := connectTarget(pos)
	if err != nil {
		return err
	}
	if _, err := parseLifetime(o.lifetime); err != nil {
		return err
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	cache, err := openCache(a.Getenv)
	if err != nil {
		return err
	}
	key := tunnelKey(c.Endpoint(), c.Region(), g.profile, thing, service)
	conn, err := a.attach(ctx, g, cache, key, thing, service, &o)
	if err != nil {
		return err
	}
	return splice(ctx, conn, a.Stdin, a.Stdout)
}

// attach returns a connection to the holder of key, starting one if none runs.
// Dials happen under the key's lock, which an idle holder also takes before it
// stops accepting: no connection is dropped by a holder that is going away.
func (a *App) attach(ctx context.Context, g *globals, cache *connectCache, key, thing, service string, o *connectOptions) (net.Conn, error) {
	lctx, cancel := context.WithTimeout(ctx, o.wait+30*time.Second)
	defer cancel()
	lock, err := lockFile(lctx, cache.lockFile(key))
	if err != nil {
		return nil, err
	}
	defer lock.release()
	if conn, err := net.Dial("unix", cache.socket(key)); err == nil {
		return conn, nil
	}
	exited, err := a.startHolder(g, cache, key, thing, service, o)
	if err != nil {
		return nil, err
	}
	wait := 20 * time.Millisecond
	for {
		if conn, err := net.Dial("unix", cache.socket(key)); err == nil {
			return conn, nil
		}
		select {
		case <-lctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("the tunnel to %s was not ready within %s (log: %s)", thing, o.wait+30*time.Second, cache.logFile(key))
		case err := <-exited:
			if err != nil {
				return nil, fmt.Errorf("%s (log: %s)", holderFailure(cache.logFile(key), err), cache.logFile(key))
			}
			exited = nil // another holder is starting: keep waiting for its socket
		case <-time.After(wait):
			wait = min(2*wait, 200*time.Millisecond)
		}
	}
}

// startHolder runs "tunnelctl connect-holder" detached, with its output in the
// key's log file. The returned channel gets the holder's exit.
func (a *App) startHolder(g *globals, cache *connectCache, key, thing, service string, o *connectOptions) (<-chan error, error) {
	self := a.Self
	if self == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding tunnelctl's own executable: %w", err)
		}
		self = exe
	}
	logf, err := os.OpenFile(cache.logFile(key), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating the tunnel log: %w", err)
	}
	defer logf.Close()
	args := holderArgs(g, key, thing, service, o)
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = sshEnv()
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the tunnel holder %s: %w", self, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return exited, nil
}

// holderArgs is the holder's command line: settings only, never a secret.
func holderArgs(g *globals, key, thing, service string, o *connectOptions) []string {
	args := holderGlobals(g)
	if g.verbose {
		args = append(args, "--verbose")
	}
	args = append(args, holderCommand, "--key", key, "--lifetime", o.lifetime, "--idle-close", o.idle.String(),
		"--wait", o.wait.String())
	if o.clientType != "" {
		args = append(args, "--destination-client-type", o.clientType)
	}
	return append(args, "--", thing, service)
}

// holderFailure is the holder's last message from its log, or its exit status.
func holderFailure(logFile string, exit error) string {
	b, _ := os.ReadFile(logFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if msg, ok := strings.CutPrefix(lines[i], "tunnelctl "+holderCommand+": "); ok {
			return msg
		}
	}
	return "the tunnel holder failed: " + exit.Error()
}

// splice copies stdin to conn and conn to stdout until the remote side ends
// (or ctx: Ctrl-C, or ssh ending its ProxyCommand). The tunnel has no half-close
// (a local EOF resets the connection), so the end of stdin is not passed on:
// what the remote side still sends is delivered until it closes.
func splice(ctx context.Context, conn net.Conn, in io.Reader, out io.Writer) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if in != nil {
		go func() { // ends with conn, or blocks on a stdin that never ends until the process exits
			_, _ = io.Copy(conn, in)
		}()
	}
	_, err := io.Copy(out, conn)
	_ = conn.Close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("connection through the tunnel: %w", err)
	}
	return nil
}
