package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/platform/service"
)

// shutdownGrace bounds a SIGTERM shutdown (systemd's TimeoutStopSec is 10 s).
const shutdownGrace = 5 * time.Second

// cmdRun runs the agent until SIGTERM/SIGINT. greengrass selects the IPC
// notification source instead of MQTT.
func cmdRun(args []string, logOut io.Writer, greengrass bool) error {
	name := "run"
	if greengrass {
		name = "greengrass"
	}
	s := newSettings(name, greengrass)
	if err := s.fs.Parse(args); err != nil {
		return err
	}
	var (
		cfg config.Config
		src notify.Source
		err error
	)
	if greengrass {
		cfg, src, err = greengrassSetup(s, logOut)
	} else {
		cfg, src, err = mqttSetup(s, logOut)
	}
	if err != nil {
		return err
	}
	log, _ := newLogger(cfg, logOut)
	a, err := agent.New(cfg, src, log)
	if err != nil {
		return err
	}
	obs, err := newObservers(cfg, src, a, log)
	if err != nil {
		return err
	}
	a.OnReady(func() {
		obs.onReady()
		if _, err := service.Ready("subscribed to tunnel notifications"); err != nil {
			log.Warn("cannot report readiness to systemd", "err", err)
		}
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log.Info("tunnel-agent starting", "version", version, "mode", name, "thing", cfg.ThingName,
		"services", cfg.Services, "max_tunnels", cfg.MaxTunnels)
	return runUntilSignal(ctx, func(ctx context.Context) error { return obs.runWith(ctx, a) }, log)
}

// runUntilSignal runs the agent and, once ctx is cancelled, gives it
// shutdownGrace to finish.
func runUntilSignal(ctx context.Context, run func(context.Context) error, log *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	_, _ = service.Stopping()
	log.Info("shutting down")
	select {
	case err := <-done:
		return err
	case <-time.After(shutdownGrace):
		return errors.New("shutdown took longer than 5 s; exiting anyway")
	}
}

func mqttSetup(s *settings, logOut io.Writer) (config.Config, notify.Source, error) {
	cfg, err := s.load(nil)
	if err != nil {
		return cfg, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	log, _ := newLogger(cfg, logOut)
	src, err := notify.NewMQTTSource(notify.MQTTConfig{
		Endpoint: cfg.Endpoint, Port: cfg.Port, ThingName: cfg.ThingName, ClientID: cfg.EffectiveClientID(),
		CertFile: cfg.Cert, KeyFile: cfg.Key, RootCAFile: cfg.RootCA, Logger: log,
	})
	return cfg, src, err
}

func newLogger(cfg config.Config, w io.Writer) (*slog.Logger, error) {
	level, err := config.ParseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), err
	}
	return slog.New(slog.NewTextHandler(w, opts)), err
}

// cmdCheckConfig validates the configuration, checks the certificate and
// key load, and prints the effective settings (never key material).
func cmdCheckConfig(args []string, stdout io.Writer) error {
	s := newSettings("check-config", false)
	if err := s.fs.Parse(args); err != nil {
		return err
	}
	cfg, err := s.load(nil)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, "# effective settings\n"+cfg.Effective())
	if err := cfg.Validate(); err != nil {
		return err
	}
	if _, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key); err != nil {
		return fmt.Errorf("cert/key: %w (check the paths and that the key belongs to the certificate)", err)
	}
	if _, err := os.ReadFile(cfg.RootCA); err != nil {
		return fmt.Errorf("root_ca: %w", err)
	}
	fmt.Fprintln(stdout, "# configuration OK")
	return nil
}
