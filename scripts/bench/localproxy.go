package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The LOCALPROXY comparison: when the environment variable names another
// local proxy with the AWS localproxy command line (protocol.md §9.7), the
// tunnel measurements are repeated with it as the source (in place of
// `tunnelctl proxy`, tunnel-agent stays the destination) and as the
// destination (in place of tunnel-agent, a second `tunnelctl proxy` is the
// source), interleaved with ours in every repetition.
const localProxyEnv = "LOCALPROXY"

// lpTokenEnv is where the AWS localproxy reads its access token (never argv).
const lpTokenEnv = "AWSIOT_TUNNEL_ACCESS_TOKEN"

// lpNobodyThing is the thing of the tunnel the LOCALPROXY destination
// serves: no agent listens to it, so tunnel-agent does not connect too.
const lpNobodyThing = "bench-localproxy-destination"

// ErrNotExecutable means LOCALPROXY does not name an executable file.
var ErrNotExecutable = errors.New("is not an executable file")

// checkLocalProxy validates the LOCALPROXY value: "" (off) or the path of
// an executable file, returned absolute.
func checkLocalProxy(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%s=%q: %w", localProxyEnv, path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s=%q: %w; set it to the path of an AWS localproxy-compatible binary or unset it", localProxyEnv, path, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s=%q %w; chmod +x it or point it at the localproxy binary", localProxyEnv, path, ErrNotExecutable)
	}
	return abs, nil
}

// lpRole is the end of the tunnel the LOCALPROXY binary serves.
type lpRole string

const (
	lpSource      lpRole = "source"
	lpDestination lpRole = "destination"
)

// label names the rows of a role, e.g. "LOCALPROXY as source".
func (r lpRole) label() string { return localProxyEnv + " as " + string(r) }

// lpMetric is the row name of metric measured through the LOCALPROXY role.
func lpMetric(metric string, r lpRole) string { return metric + ", " + r.label() }

// lpServiceArg is the -s (source: SVC=port) or -d (destination:
// SVC=host:port) value for services in order.
func lpServiceArg(services []string, targets map[string]string) (string, error) {
	parts := make([]string, 0, len(services))
	for _, s := range services {
		t, ok := targets[s]
		if !ok || t == "" {
			return "", fmt.Errorf("no local address for service %s", s)
		}
		parts = append(parts, s+"="+t)
	}
	return strings.Join(parts, ","), nil
}

// freePorts returns n distinct loopback ports that were free a moment ago
// (the AWS localproxy does not take port 0). The caller retries when one is
// taken in between.
func freePorts(n int) ([]int, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

var hashRe = regexp.MustCompile(`^[0-9a-f]{8}$`)

// parseSubjectHash checks the output of `openssl x509 -hash -noout`.
func parseSubjectHash(out string) (string, error) {
	h := strings.TrimSpace(out)
	if !hashRe.MatchString(h) {
		return "", fmt.Errorf("openssl x509 -hash printed %q, not an 8-digit hex subject hash", h)
	}
	return h, nil
}

// lpCADir writes the emulator CA for the localproxy's -c (an OpenSSL
// hashed capath): ca.pem, and <subject-hash>.0 when openssl is available.
func (b *bench) lpCADir(ctx context.Context, caFile string) (string, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return "", fmt.Errorf("read the emulator CA: %w", err)
	}
	dir := filepath.Join(b.tmp, "localproxy-ca")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem, 0o600); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "openssl", "x509", "-hash", "-noout", "-in", ca).Output()
	if err == nil {
		var h string
		if h, err = parseSubjectHash(string(out)); err == nil {
			err = os.WriteFile(filepath.Join(dir, h+".0"), pem, 0o600)
		}
	}
	if err != nil {
		b.progress("LOCALPROXY CA dir has only ca.pem (no OpenSSL subject-hash name: %v)", err)
	}
	return dir, nil
}

// lpArgs is the localproxy command line (the token goes in its environment).
func lpArgs(r lpRole, services, endpoint, caDir string) []string {
	args := []string{"-e", endpoint, "-c", caDir, "-v", "3"}
	if r == lpSource {
		return append([]string{"-s", services, "-b", "127.0.0.1"}, args...)
	}
	return append([]string{"-d", services}, args...)
}

// startLocalProxy runs the LOCALPROXY binary for role with token in its
// environment.
func (b *bench) startLocalProxy(name string, r lpRole, services, endpoint, caDir, token string) (*child, error) {
	return b.start(name, b.opts.localproxy, lpArgs(r, services, endpoint, caDir),
		[]string{lpTokenEnv + "=" + token})
}

// untilExit returns ctx, also cancelled when c exits (with its last output
// as the cause), so a wait for c's effect fails at once when it dies.
func untilExit(ctx context.Context, c *child) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-c.done:
			cancel(fmt.Errorf("%s: %w (%v); last output:\n%s", c.name, ErrChildExited, c.err, c.tail(15)))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// waitAccepting dials each address until it accepts (the localproxy
// listens once its WebSocket is up), then checks echoAddr end to end.
func waitAccepting(ctx context.Context, addrs []string, echoAddr string) error {
	for _, a := range addrs {
		for {
			c, err := directDial(a)(ctx)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s does not accept connections: %w", a, context.Cause(ctx))
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return pingUntil(ctx, echoAddr)
}

// pingUntil retries a 1-byte echo through addr on new connections until
// one answers: a path may accept before its far end is ready.
func pingUntil(ctx context.Context, addr string) error {
	for {
		c, err := directDial(addr)(ctx)
		if err == nil {
			err = pingConn(ctx, c, 2*time.Second)
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no echo through %s: %v: %w", addr, err, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func portAddrs(ports []int) map[string]string {
	m := make(map[string]string, len(ports))
	for i, p := range ports {
		m[tunnelServices[i]] = strconv.Itoa(p)
	}
	return m
}
