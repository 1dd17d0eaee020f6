package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/cmd/tunnelctl/internal/localproxy"
)

func (a *App) cmdLocalproxy(ctx context.Context, _ *globals, args []string) error {
	lp, err := localproxy.Parse(args, a.Getenv)
	var ue *localproxy.UsageError
	switch {
	case errors.As(err, &ue):
		return usageError("%s", ue.Msg)
	case err != nil:
		return err
	case lp.Help:
		io.WriteString(a.Stderr, localproxy.Usage())
		return flag.ErrHelp
	case lp.Version:
		fmt.Fprintln(a.Stdout, "localproxy (tunnelctl)", a.version())
		return nil
	}
	cfg := lp.Session
	if cfg.AccessToken = strings.TrimSpace(a.Getenv(localproxy.EnvAccessToken)); cfg.AccessToken == "" {
		return localproxy.ErrNoToken
	}
	cfg.ClientToken = strings.TrimSpace(firstNonEmpty(a.Getenv(localproxy.EnvClientToken), a.Getenv(localproxy.EnvClientTokenOld)))
	if lp.CAPath != "" {
		if cfg.RootCAs, err = localproxy.LoadCAPath(lp.CAPath); err != nil {
			return err
		}
	}
	cfg.Logger = localproxy.Logger(a.Stderr, lp.Verbosity)
	if lp.IgnoredType {
		cfg.Logger.Debug("destination mode ignores -y/--destination-client-type: it speaks the protocol version the source uses")
	}
	if cfg.Mode == tunnel.ModeSource {
		cfg.ConnBufferSize = sourceConnBuffer
	}
	sess, err := tunnel.New(cfg)
	if err != nil {
		return fmt.Errorf("starting the %s proxy: %w", cfg.Mode, err)
	}
	if cfg.Mode == tunnel.ModeSource {
		if err := a.announce(false, sess, cfg.Services); err != nil {
			sess.Close()
			return err
		}
	}
	return runSession(ctx, sess, cfg.Mode, a.Stderr)
}
