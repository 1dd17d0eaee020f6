package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/control"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/platform/memtrim"
	"github.com/tunnel-agent/tunnel-agent/platform/service"
)

// observers are the parts that show what the agent does: the control
// socket and metrics (control.Server) and the cloud audit queue.
type observers struct {
	srv   *control.Server
	queue *audit.Queue
	pub   audit.Publisher
	ready *readyState // for a source that does not report its state
	trim  trimmer
}

// trimmer is memtrim.Trimmer (tests count its calls).
type trimmer interface {
	Soon()
	SoonPaced()
	Stop()
}

// readyState stands in for the state of a source that does not report
// one (Greengrass IPC): connecting until subscribed.
type readyState struct {
	mu sync.Mutex
	st notify.SourceState
}

func (r *readyState) subscribed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.State, r.st.Since = notify.StateSubscribed.String(), time.Now()
	r.st.Connects++
}

func (r *readyState) get() notify.SourceState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// onReady is called after every successful subscription.
func (o *observers) onReady() {
	if o.ready != nil {
		o.ready.subscribed()
	}
	o.trim.Soon()
}

// observe hands an event to the control server, and schedules a trim
// after a tunnel connects or closes and after a local connection opens:
// the code that did it (TLS handshake, dial, logging) is not the code
// that then moves the data.
func (o *observers) observe(e audit.Event) {
	o.srv.Observe(e)
	switch e.Event {
	case audit.TunnelConnected, audit.TunnelClosed:
		o.trim.Soon()
	case audit.StreamStarted:
		o.trim.SoonPaced()
	}
}

// newObservers wires the observers to the agent (its OnEvent hook).
func newObservers(cfg config.Config, src notify.Source, a *agent.Agent, log *slog.Logger, status *service.StatusLine) (*observers, error) {
	o := &observers{trim: memtrim.New(memtrim.TrimDelay)}
	if cfg.AuditTopic != "" {
		pub, ok := src.(audit.Publisher)
		if !ok {
			return nil, errors.New("audit_topic: this notification source cannot publish; remove audit_topic")
		}
		q, err := audit.NewQueue(audit.QueueConfig{Topic: cfg.AuditTopicFor(cfg.ThingName), Size: cfg.AuditQueue, Logger: log})
		if err != nil {
			return nil, err
		}
		o.queue, o.pub = q, pub
	}
	opts := control.Options{Agent: a, Queue: o.queue, MetricsListen: cfg.MetricsListen, Thing: cfg.ThingName,
		Version: version, MaxTunnels: cfg.MaxTunnels, Logger: log,
		// systemctl status: "...; tunnels: 2 open, 3 connections".
		OnCounts: func(tunnels, conns int) {
			status.Set("tunnels", fmt.Sprintf("%d open, %d connections", tunnels, conns))
		}}
	if cfg.ControlSocket != config.ControlSocketOff {
		opts.Socket = cfg.ControlSocket
	}
	if r, ok := src.(notify.StateReporter); ok {
		opts.Source = r.State
	} else {
		o.ready = &readyState{st: notify.SourceState{Kind: "greengrass", Topic: notify.Topic(cfg.ThingName),
			State: notify.StateConnecting.String(), Since: time.Now()}}
		opts.Source = o.ready.get
	}
	srv, err := control.New(opts)
	if err != nil {
		return nil, err
	}
	o.srv = srv
	a.OnEvent(o.observe)
	return o, nil
}

// observersChanged refuses a reload that changes what the observers were
// built with: they keep their listeners and queue until a restart.
func observersChanged(old, cfg config.Config) error {
	var keys []string
	if old.ControlSocket != cfg.ControlSocket {
		keys = append(keys, "control_socket")
	}
	if old.MetricsListen != cfg.MetricsListen {
		keys = append(keys, "metrics_listen")
	}
	if old.AuditTopic != cfg.AuditTopic || old.AuditQueue != cfg.AuditQueue {
		keys = append(keys, "audit_topic/audit_queue")
	}
	if len(keys) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: restart the agent to change them", agent.ErrNeedsRestart, strings.Join(keys, ", "))
}

// runWith runs the agent with its observers; they stop after the agent.
func (o *observers) runWith(ctx context.Context, a *agent.Agent) error {
	octx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { _ = o.srv.Run(octx) })
	if o.queue != nil {
		wg.Go(func() { _ = o.queue.Run(octx, o.pub) })
	}
	err := a.Run(ctx)
	cancel()
	wg.Wait()
	o.trim.Stop()
	return err
}

// cmdStatus asks the running agent for its status over the control socket.
func cmdStatus(args []string, stdout io.Writer) error {
	fs, asJSON, socket, cfgPath := statusFlags()
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("status takes no arguments, got %q (flags: --json, --socket, --config)", fs.Arg(0))
	}
	path := *socket
	if path == "" {
		path = socketFromConfig(*cfgPath)
	}
	if path == config.ControlSocketOff {
		return errors.New("control_socket is off in the configuration: nothing to ask; use `systemctl status tunnel-agent`")
	}
	st, err := control.Query(context.Background(), path)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return control.WriteText(stdout, &st, time.Now())
}

// statusFlags are the flags of `tunnel-agent status` (also for the docs).
func statusFlags() (fs *flag.FlagSet, asJSON *bool, socket, cfgPath *string) {
	fs = flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON = fs.Bool("json", false, "print the status as JSON")
	socket = fs.String("socket", "", "control socket `path` (default: control_socket of --config, else "+config.DefaultControlSocket+")")
	cfgPath = fs.String("config", "", "config `file` to read control_socket from (default "+config.DefaultConfigPath+" if readable)")
	return fs, asJSON, socket, cfgPath
}

// socketFromConfig reads control_socket from the config file, falling
// back to the default when there is no readable file.
func socketFromConfig(path string) string {
	if path == "" {
		path = config.DefaultConfigPath
		if _, err := os.Stat(path); err != nil {
			return config.DefaultControlSocket
		}
	}
	cfg, err := config.Load(path)
	if err != nil || cfg.ControlSocket == "" {
		return config.DefaultControlSocket
	}
	return cfg.ControlSocket
}
