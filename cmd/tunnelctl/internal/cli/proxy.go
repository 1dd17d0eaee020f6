package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
	"github.com/tunnel-agent/tunnel-agent/platform/memtrim"
)

// sourceConnBuffer is the per-connection buffer of tunnelctl's source proxy. The
// protocol has no flow control: data for a local client that reads slower than the
// tunnel delivers is queued, and the connection is reset when the queue stays full
// (conn_stall_timeout). An operator's machine can afford more than the device-side
// default (1 MiB), so that one slow client holds the others' streams up later. A
// connection alone on its tunnel queues at most tunnel.SoloConnBufferSize while its
// client reads (see there).
const sourceConnBuffer = 16 << 20

// parseServices parses "SSH=2222,HTTP=8080" into service -> "bind:port".
func parseServices(spec, bind string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, port, ok := strings.Cut(item, "=")
		if !ok {
			return nil, usageError("service %q: name it, e.g. SSH=%s", item, item)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 {
			return nil, usageError("service %s: port %q must be 0-65535", name, port)
		}
		if _, dup := out[name]; dup {
			return nil, usageError("service %s given twice", name)
		}
		out[name] = net.JoinHostPort(bind, port)
	}
	if len(out) == 0 {
		return nil, usageError("--services is required, e.g. --services SSH=2222,HTTP=8080")
	}
	return out, nil
}

// rejectTokenFlags refuses a token given as a flag, without repeating its value.
func rejectTokenFlags(args []string) error {
	for _, arg := range args {
		if arg == "--" {
			return nil
		}
		name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if strings.HasPrefix(arg, "-") && (name == "token" || name == "access-token" || name == "t" || name == "client-token") {
			return usageError("tokens are never taken as command-line values (other users see them in ps): " +
				"use --token-file FILE or the AWSIOT_TUNNEL_ACCESS_TOKEN environment variable")
		}
	}
	return nil
}

// newLogger builds the stderr logger of long-running commands.
func (a *App) newLogger(verbose bool) *slog.Logger {
	lvl := slog.LevelInfo
	if verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func (a *App) cmdProxy(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("proxy", a.Stderr, withJSON|withData)
	services := fs.String("services", "", "service listen ports, e.g. SSH=2222,HTTP=8080 (port 0: any free port)")
	bind := fs.String("bind", "127.0.0.1", "local address to listen on")
	clientType := fs.String("destination-client-type", "", "V1 or V2 for old destinations (Device Client, Greengrass); default automatic")
	bufSize := fs.Int("conn-buffer", sourceConnBuffer>>20, "MiB buffered per local connection before a client that does not keep up is reset "+
		"(a connection alone on the tunnel: 1 MiB while its client reads, then the tunnel waits for it)")
	tokenFile := fs.String("token-file", "", "file holding the source access token (default: $AWSIOT_TUNNEL_ACCESS_TOKEN)")
	clientTokenFile := fs.String("client-token-file", "", "keep the client token in this 0600 file so a restarted proxy can reuse the same access token")
	if err := rejectTokenFlags(args); err != nil {
		return err
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	svc, err := parseServices(*services, *bind)
	if err != nil {
		return err
	}
	token, err := a.readToken(*tokenFile)
	if err != nil {
		return err
	}
	clientToken, err := a.loadClientToken(*clientTokenFile, token)
	if err != nil {
		return err
	}
	d, err := a.proxyDataPlane(ctx, g)
	if err != nil {
		return err
	}
	log := a.newLogger(g.verbose)
	trim := memtrim.New(memtrim.TrimDelay)
	defer trim.Stop()
	limits, unlimit := a.proxyLimits()
	defer unlimit()
	sess, err := tunnel.New(tunnel.Config{
		Mode: tunnel.ModeSource, Endpoint: d.endpoint, Region: d.region, AccessToken: token, ClientToken: clientToken,
		CAFile: d.caFile, RootCAs: d.roots, Services: svc, DestinationClientType: strings.ToUpper(*clientType), Logger: log, ConnBufferSize: *bufSize << 20,
		Limits: limits,
		OnEvent: func(e tunnel.Event) {
			switch e.Kind {
			case tunnel.EventConnected:
				trim.Soon()
			case tunnel.EventStreamOpened:
				trim.SoonPaced()
			}
		},
	})
	if err != nil {
		return fmt.Errorf("starting the source proxy: %w", err)
	}
	if *clientTokenFile != "" && clientToken == "" {
		if err := writeSecret(*clientTokenFile, clientTokenFileContent(sess.ClientToken(), token)); err != nil {
			return err
		}
	}
	if err := a.announce(g.json, sess, svc); err != nil {
		return err
	}
	return runSession(ctx, sess, tunnel.ModeSource, a.Stderr)
}

// proxyLimits returns the session's Limits (the defaults) and, in the real
// process unless GOMEMLIMIT is set, makes the Go memory limit follow what
// the connections hold: the heap of a bulk transfer stays small, and a
// client that falls behind (up to the 16 MiB queue budget) or many
// connections do not make the collector run continuously. See
// platform/memtrim.DemandLimit.
// The func returned ends the DemandLimit's quiet mode (see there).
func (a *App) proxyLimits() (*tunnel.Limits, func()) {
	lim := tunnel.NewLimits(0, 0, 0)
	if a.limitMemory && a.Getenv("GOMEMLIMIT") == "" {
		return lim, memtrim.FollowDemand(lim, memtrim.ProxyLimitBase).Close
	}
	return lim, func() {}
}

// proxyDataPlane finds the data plane of proxy. "--endpoint HOST:PORT" (no
// scheme) keeps its old meaning under proxy, the data plane, with a notice.
// Without an API endpoint or region, an explicit data endpoint is enough.
func (a *App) proxyDataPlane(ctx context.Context, g *globals) (dataPlane, error) {
	if g.endpoint != "" && !strings.Contains(g.endpoint, "://") {
		fmt.Fprintf(a.Stderr, "tunnelctl proxy: taking --endpoint %s as --data-endpoint (its old meaning under proxy); "+
			"--endpoint is the API URL in every command now\n", g.endpoint)
		if g.dataEndpoint == "" {
			g.dataEndpoint = g.endpoint
		}
		g.endpoint = ""
	}
	if g.region == "" {
		g.region = a.Getenv("AWSIOT_TUNNEL_REGION")
	}
	c, err := g.client(ctx)
	if errors.Is(err, awsapi.ErrNoRegion) {
		explicit := firstNonEmpty(g.dataEndpoint, a.Getenv("AWSIOT_TUNNEL_ENDPOINT"))
		if explicit == "" {
			return dataPlane{}, usageError("give --region, --data-endpoint HOST:PORT or the API --endpoint URL")
		}
		return dataPlane{endpoint: explicit, caFile: g.caFile}, nil
	}
	if err != nil {
		return dataPlane{}, err
	}
	return a.resolveDataPlane(g, c)
}

// announce prints where each service listens, as text lines or (asJSON) as one
// object {"services":{"SSH":"127.0.0.1:2222"}}, and tells the test hook.
func (a *App) announce(asJSON bool, sess *tunnel.Session, svc map[string]string) error {
	addrs := map[string]string{}
	for _, name := range sortedKeys(svc) {
		addr := sess.Addr(name).String()
		addrs[name] = addr
		label := name
		if name == unnamedService {
			label = unnamedLabel
		}
		if !asJSON {
			fmt.Fprintf(a.Stdout, "%s: listening on %s%s\n", label, addr, connectHint(name, addr))
		}
	}
	if asJSON {
		if err := a.printJSON(struct {
			Services map[string]string `json:"services"`
		}{addrs}); err != nil {
			return err
		}
	}
	if a.onProxyReady != nil {
		a.onProxyReady(addrs)
	}
	return nil
}

// connectHint suggests how to use a forwarded service.
func connectHint(service, addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	switch strings.ToUpper(service) {
	case "SSH":
		return "  (ssh -p " + port + " USER@localhost)"
	case "HTTP", "WEB":
		return "  (curl http://localhost:" + port + "/)"
	}
	return ""
}

// runSession runs the session and explains how it ended.
func runSession(ctx context.Context, sess *tunnel.Session, mode tunnel.Mode, stderr io.Writer) error {
	err := sess.Run(ctx)
	switch {
	case err == nil && ctx.Err() == nil:
		fmt.Fprintln(stderr, "The tunnel was closed by the service.")
		return nil
	case err == nil:
		return nil
	}
	return fmt.Errorf("%s proxy: %w", mode, err)
}

// unnamedLabel stands for the unnamed ("V1 format") mapping in the
// "<service>: listening on <addr>" line: its service id is the tunnel's only
// service, known once connected.
const unnamedLabel = "unnamed"

// unnamedService is the service key of an unnamed mapping (tunnel.Unnamed).
const unnamedService = tunnel.Unnamed

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
