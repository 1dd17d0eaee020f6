package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/platform/greengrass"
	"github.com/tunnel-agent/tunnel-agent/platform/memtrim"
	"github.com/tunnel-agent/tunnel-agent/platform/service"
)

// shutdownGrace bounds a SIGTERM shutdown (systemd's TimeoutStopSec is 10 s).
const shutdownGrace = 5 * time.Second

// daemon is a running agent with what a reload needs.
type daemon struct {
	s       *settings
	cfg     config.Config // running configuration
	a       *agent.Agent
	mqtt    *notify.MQTTSource // nil in Greengrass mode
	logs    *logSwitch
	log     *slog.Logger
	status  *service.StatusLine
	greenGG bool
	obs     *observers
}

// cmdRun runs the agent until SIGTERM/SIGINT; SIGHUP reloads the
// configuration. from selects MQTT or the Greengrass IPC notification source.
func cmdRun(args []string, logOut io.Writer, from notifySource) error {
	name := from.command()
	greengrass := from == fromGreengrass
	if greengrass {
		if err := refuseMQTTFlags(args); err != nil {
			return err
		}
	}
	s := newSettings(name, from)
	if err := s.parse(args); err != nil {
		return err
	}
	d := &daemon{s: s, status: service.NewStatusLine(), greenGG: greengrass}
	var src notify.Source
	var err error
	if greengrass {
		d.cfg, src, err = greengrassSetup(s, logOut)
	} else {
		d.cfg, err = s.loadValid()
		if err == nil {
			d.logs, err = newLogSwitch(d.cfg, logOut)
		}
		if err == nil {
			d.mqtt, err = notify.NewMQTTSource(d.mqttConfig(d.cfg))
			src = d.mqtt
		}
	}
	if err != nil {
		return err
	}
	if d.logs == nil {
		if d.logs, err = newLogSwitch(d.cfg, logOut); err != nil {
			return err
		}
	}
	d.log = d.logs.logger()
	if d.a, err = agent.New(d.cfg, src, d.log); err != nil {
		return err
	}
	if d.obs, err = newObservers(d.cfg, src, d.a, d.log, d.status); err != nil {
		return err
	}
	d.wire()
	limit, _ := setMemoryLimit(d.a.Limits(), os.Getenv("GOMEMLIMIT") != "")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d.log.Info("tunnel-agent starting", attrVersion, version, attrMode, name, attrThing, d.cfg.ThingName,
		attrServices, d.cfg.Services, attrMaxTunnels, d.cfg.MaxTunnels, attrMaxConnections, d.cfg.MaxConnections,
		attrMaxTotalConnections, d.cfg.MaxTotalConnections, attrQueueBudget, d.cfg.QueueBudget.String(), attrMemoryLimit, limit)
	return d.runUntilSignal(ctx)
}

// Settling and quiet mode drop the agent's free buffers too (FollowDemand).
var _ memtrim.Releaser = (*tunnel.Limits)(nil)

// setMemoryLimit asks the Go garbage collector to keep the process near
// memtrim.AgentLimitBase plus what its connections hold (a soft limit: the
// collector works harder near it, nothing fails), unless GOMEMLIMIT is set.
// Without a limit the collector lets the heap grow to twice what is live: a
// flood that fills the queue budget took the agent's RSS to 53 MiB instead
// of 29. The fixed limit before this (queue_budget + 16 MiB) had to cover a
// full queue budget and left the heap of an ordinary bulk transfer, with
// little queued, free to grow to twice its live 4-6 MiB; following the
// connections and their queues keeps that small, and still gives a full
// budget or 256 connections room instead of making the collector run
// continuously. It returns the limit in effect, for the log, and the
// DemandLimit (nil with GOMEMLIMIT).
func setMemoryLimit(lim *tunnel.Limits, fromEnv bool) (string, *memtrim.DemandLimit) {
	if fromEnv {
		return "GOMEMLIMIT=" + os.Getenv("GOMEMLIMIT"), nil
	}
	q := memtrim.FollowDemand(lim, memtrim.AgentLimitBase)
	gc := "; quiet collector while no connection is open"
	if p := q.BusyPercent(); p > 0 {
		gc += ", GOGC=" + strconv.Itoa(p) + " while one is"
	}
	return config.ByteSize(memtrim.AgentLimitBase).String() + " + " + config.ByteSize(memtrim.LimitPerConn).String() +
		" per connection + the buffers of each busy tunnel after the first + bytes queued" + gc, q
}

// wire connects the agent to systemd: READY=1 as soon as it runs, STATUS=
// with the connection state, WATCHDOG=1 from its event loop.
func (d *daemon) wire() {
	d.a.OnStarted(func() {
		if d.mqtt != nil {
			d.status.Set("mqtt", "connecting")
		} else {
			d.status.Set("notifications", "subscribing through Greengrass IPC")
		}
		if _, err := service.Ready(d.status.String()); err != nil {
			d.log.Warn("cannot report readiness to systemd", attrErr, err)
		}
	})
	d.a.OnReady(func() {
		d.obs.onReady()
		if d.mqtt == nil {
			d.status.Set("notifications", "subscribed")
		}
	})
	if iv := service.WatchdogInterval(); iv > 0 {
		d.a.SetHeartbeat(iv, func() {
			if _, err := service.Watchdog(); err != nil {
				d.log.Warn("cannot ping the systemd watchdog", attrErr, err)
			}
		})
	}
}

func (d *daemon) mqttConfig(cfg config.Config) notify.MQTTConfig {
	return notify.MQTTConfig{
		Endpoint: cfg.Endpoint, Port: cfg.Port, ThingName: cfg.ThingName, ClientID: cfg.EffectiveClientID(),
		CertFile: cfg.Cert, KeyFile: cfg.Key, RootCAFile: cfg.RootCA, Proxy: cfg.HTTPSProxy,
		Logger: d.logLater(), OnState: d.onMQTTState,
	}
}

// logLater is the logger for the MQTT source, which exists before d.log.
func (d *daemon) logLater() *slog.Logger {
	if d.logs == nil {
		return nil
	}
	return d.logs.logger()
}

// onMQTTState keeps STATUS= current.
func (d *daemon) onMQTTState(i notify.StateInfo) {
	text := i.State.String() + " " + i.Broker
	switch i.State {
	case notify.StateSubscribed:
		text = "subscribed to tunnel notifications via " + i.Broker
	case notify.StateRetrying:
		text = fmt.Sprintf("%s failed (%s), retry %d in %s", i.Broker, i.Cause.Kind, i.Attempt, i.RetryIn.Round(time.Second))
	}
	d.status.Set("mqtt", text)
}

// runUntilSignal runs the agent, reloads on SIGHUP and, once ctx is
// cancelled, gives it shutdownGrace to finish.
func (d *daemon) runUntilSignal(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	done := make(chan error, 1)
	go func() { done <- d.obs.runWith(ctx, d.a) }()
	for {
		select {
		case err := <-done:
			return err
		case <-hup:
			d.reload()
			continue
		case <-ctx.Done():
		}
		break
	}
	_, _ = service.Stopping()
	d.log.Info("shutting down")
	select {
	case err := <-done:
		return err
	case <-time.After(shutdownGrace):
		return errors.New("shutdown took longer than 5 s; exiting anyway")
	}
}

// reload reads the configuration again (file, then the command line's
// flags) and applies it, or refuses it and keeps the running one.
func (d *daemon) reload() {
	_, _ = service.SdNotify("RELOADING=1")
	defer func() { _, _ = service.SdNotify("READY=1") }()
	d.log.Info("SIGHUP: reloading the configuration", attrConfig, d.s.source())
	cfg, err := d.loadForReload()
	if err == nil && cfg.StateDir != d.cfg.StateDir {
		err = fmt.Errorf("%w: state_dir (%s to %s): restart the agent to move it", agent.ErrNeedsRestart, d.cfg.StateDir, cfg.StateDir)
	}
	if err == nil {
		err = observersChanged(d.cfg, cfg)
	}
	if err == nil && d.mqtt != nil {
		_, err = d.mqtt.Reconfigure(d.mqttConfig(cfg))
	}
	var changed []string
	if err == nil {
		changed, err = d.a.Reload(cfg)
	}
	if err != nil {
		d.log.Error("configuration reload refused; the running configuration stays", attrErr, err)
		return
	}
	if err := d.logs.apply(cfg); err != nil { // validated above: cannot fail
		d.log.Error("cannot apply the log settings", attrErr, err)
	}
	d.cfg = cfg
	if len(changed) == 0 {
		d.log.Info("configuration reloaded: nothing changed")
		return
	}
	d.log.Info("configuration reloaded", attrChanged, changed, attrServices, cfg.Services, attrMaxTunnels, cfg.MaxTunnels,
		attrLogLevel, cfg.LogLevel)
}

func (d *daemon) loadForReload() (config.Config, error) {
	if d.greenGG {
		cfg, err := d.s.load(greengrass.NormalizeConfigJSON)
		if err == nil {
			cfg.ThingName = d.cfg.ThingName
			err = cfg.ValidateTunnel()
		}
		return cfg, err
	}
	return d.s.loadValid()
}

// newLogger builds a logger for cfg writing to w (see logSwitch).
func newLogger(cfg config.Config, w io.Writer) (*slog.Logger, error) {
	ls, err := newLogSwitch(cfg, w)
	return ls.logger(), err
}
