package demo

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
)

// SourceConnBuffer is the per-connection buffer of the demo's source proxy (see
// tunnel.Config.ConnBufferSize): the emulator relays at loopback speed, faster
// than a local client may read for a moment, and the protocol has no flow control.
const SourceConnBuffer = 16 << 20

// startProxy starts the source proxy on the configured ports (free ports when busy).
func (d *demo) startProxy(open *awsapi.OpenTunnelOutput) (map[string]string, error) {
	want := map[string]int{"SSH": d.cfg.SSHPort, "HTTP": d.cfg.HTTPPort}
	listen := map[string]string{}
	for svc, port := range want {
		listen[svc] = pickAddr(port)
	}
	cfg := tunnel.Config{
		Mode: tunnel.ModeSource, Endpoint: d.emu.DataEndpoint(), RootCAs: d.emu.CAPool(),
		AccessToken: open.SourceAccessToken, Services: listen, Logger: d.cfg.Logger.With(attrComponent, "proxy"),
		ConnBufferSize: SourceConnBuffer,
	}
	sess, err := tunnel.New(cfg)
	if err != nil { // a port was taken between the probe and the bind: use free ports
		for svc := range listen {
			listen[svc] = "127.0.0.1:0"
		}
		if sess, err = tunnel.New(cfg); err != nil {
			return nil, fmt.Errorf("starting the source proxy: %w", err)
		}
	}
	d.stack.start("source proxy", sess.Run)
	addrs := map[string]string{}
	for svc, port := range want {
		addrs[svc] = sess.Addr(svc).String()
		if _, got, _ := net.SplitHostPort(addrs[svc]); port != 0 && got != strconv.Itoa(port) {
			fmt.Fprintf(d.cfg.Out, "Port %d for %s is busy; using %s instead.\n", port, svc, got)
		}
	}
	return addrs, nil
}

// pickAddr returns 127.0.0.1:port when that port is free, else 127.0.0.1:0.
func pickAddr(port int) string {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if port == 0 {
		return addr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "127.0.0.1:0"
	}
	ln.Close()
	return addr
}

// waitConnected waits until both ends of the tunnel are connected.
func (d *demo) waitConnected(ctx context.Context, id string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		out, err := d.api.DescribeTunnel(ctx, &awsapi.DescribeTunnelInput{TunnelID: id})
		if err != nil {
			return fmt.Errorf("watching the demo tunnel: %w", err)
		}
		t := out.Tunnel
		if connected(t.SourceConnectionState) && connected(t.DestinationConnectionState) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the demo tunnel did not connect within %s (source %s, destination %s); run with --verbose",
				startTimeout, state(t.SourceConnectionState), state(t.DestinationConnectionState))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func connected(cs *awsapi.ConnectionState) bool {
	return cs != nil && cs.Status == awsapi.StatusConnected
}

func state(cs *awsapi.ConnectionState) string {
	if cs == nil {
		return "unknown"
	}
	return cs.Status
}

func (d *demo) printReady(id string, addrs map[string]string) {
	w := d.cfg.Out
	_, sshPort, _ := net.SplitHostPort(addrs["SSH"])
	_, httpPort, _ := net.SplitHostPort(addrs["HTTP"])
	fmt.Fprintf(w, "Demo running on this machine: emulator, tunnel agent for %q and source proxy.\n", Thing)
	fmt.Fprintf(w, "  Emulator API:  %s  (tunnelctl --endpoint %s describe %s)\n", d.emu.APIURL(), d.emu.APIURL(), id)
	fmt.Fprintf(w, "  Tunnel:        %s, services SSH and HTTP\n", id)
	fmt.Fprintf(w, "  SSH  -> %s\n", d.sshLabel)
	if d.echoService == "SSH" {
		fmt.Fprintf(w, "         try:  nc localhost %s   (type a line, it comes back)\n", sshPort)
	} else {
		fmt.Fprintf(w, "         try:  ssh -p %s %s@localhost\n", sshPort, userName())
	}
	fmt.Fprintf(w, "  HTTP -> a built-in web page\n         try:  curl http://localhost:%s/\n", httpPort)
	if !d.cfg.Check {
		fmt.Fprintln(w, "Press Ctrl-C to stop; everything is removed on exit.")
	}
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("emulator broker address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	return host, port, err
}

func userName() string {
	for _, k := range []string{"USER", "LOGNAME"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
	}
	return "USER"
}
