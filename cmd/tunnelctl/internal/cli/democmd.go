package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/tunnel-agent/tunnel-agent/cmd/tunnelctl/internal/demo"
)

func (a *App) cmdDemo(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("demo", a.Stderr, 0)
	check := fs.Bool("check", false, "push data through every service, verify it, print throughput and exit 0/1")
	sshPort := fs.Int("ssh-port", demo.DefaultSSHPort, "local port of the SSH service (busy: a free port; --check: a free port)")
	httpPort := fs.Int("http-port", demo.DefaultHTTPPort, "local port of the HTTP service (busy: a free port; --check: a free port)")
	sshTarget := fs.String("ssh-target", "127.0.0.1:22", "the device-side sshd the SSH service reaches when it listens (else the built-in echo)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	if g.json {
		return usageError("demo has no JSON output: drop --json (for scripts run tunnel-emulator and use tunnelctl open/proxy --json)")
	}
	cfg := demo.Config{Check: *check, SSHPort: *sshPort, HTTPPort: *httpPort, SSHTarget: *sshTarget, Out: a.Stdout, OnReady: a.onProxyReady}
	if *check {
		cfg.SSHPort, cfg.HTTPPort = 0, 0
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if g.verbose {
		cfg.Logger = a.newLogger(true)
	}
	if err := demo.Run(ctx, cfg); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}
