// Package control shows what the device agent is doing: the read-only
// Unix control socket behind `tunnel-agent status`, the opt-in Prometheus
// metrics endpoint, and the feed of audit events to the cloud queue.
//
// The socket speaks one request per connection: the client sends the
// line "status" and gets one JSON document (Status) and the connection
// closes. Nothing on the socket changes the agent. Requests are bounded
// (1 KiB, 5 s, 16 clients at once); anything else gets {"error": ...}.
package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
)

// Snapshotter is the agent as control sees it.
type Snapshotter interface {
	Snapshot() agent.Snapshot
}

// Options configures a Server. Agent is required.
type Options struct {
	Agent Snapshotter
	// Source reports the notification source's state; nil leaves it out.
	Source func() notify.SourceState
	// Queue is the cloud audit queue, nil when audit_topic is off.
	Queue *audit.Queue
	// Socket is the control socket path ("" for none); MetricsListen a
	// loopback host:port or unix:/path ("" for none).
	Socket        string
	MetricsListen string
	Thing         string
	Version       string
	MaxTunnels    int
	Logger        *slog.Logger
	// OnCounts, if set, gets the live tunnels and local connections after
	// every event that changes them (for systemd's STATUS=). It is called
	// synchronously and must not block for long.
	OnCounts func(tunnels, connections int)
}

// Server serves the control socket and the metrics, and counts the audit
// events it is given (Observe).
type Server struct {
	o       Options
	log     *slog.Logger
	started time.Time
	m       *metricsBook
	timeout time.Duration // for one request (RequestTimeout)

	mu     sync.Mutex
	ready  chan struct{}
	sock   string // bound socket path, once listening
	metric string // bound metrics address
}

// New returns a Server for o.
func New(o Options) (*Server, error) {
	if o.Agent == nil {
		return nil, errors.New("control: an agent is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{o: o, log: o.Logger, started: time.Now(), m: newMetricsBook(), timeout: RequestTimeout,
		ready: make(chan struct{})}, nil
}

// Observe takes one audit event: it is counted for the metrics and, when
// it belongs to the published trail, queued for the cloud. It never blocks.
func (s *Server) Observe(e audit.Event) {
	s.m.observe(&e)
	if s.o.OnCounts != nil {
		switch e.Event {
		case audit.TunnelOpened, audit.TunnelClosed, audit.StreamStarted, audit.StreamEnded:
			snap := s.o.Agent.Snapshot()
			conns := 0
			for _, t := range snap.Traffic {
				conns += t.Active
			}
			s.o.OnCounts(len(snap.Tunnels), conns)
		}
	}
	if s.o.Queue != nil && e.Published() {
		e.Thing = s.o.Thing
		s.o.Queue.Add(e)
	}
}

// Run serves until ctx ends. A socket or metrics listener that cannot be
// set up is logged and left out: observing must never stop the agent
// from serving tunnels.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if s.o.Socket != "" {
		if ln, err := listenControl(s.o.Socket); err != nil {
			level := slog.LevelWarn
			if errors.Is(err, fs.ErrNotExist) { // no runtime directory: not under the unit
				level = slog.LevelInfo
			}
			s.log.Log(ctx, level, "no control socket: `tunnel-agent status` will not work", "path", s.o.Socket, "err", err,
				"hint", "under systemd the unit's RuntimeDirectory= creates its directory; elsewhere set control_socket to a writable path, or off")
		} else {
			s.setAddr(&s.sock, s.o.Socket)
			wg.Go(func() { s.serveControl(ctx, ln) })
		}
	}
	if s.o.MetricsListen != "" {
		if ln, err := listenMetrics(s.o.MetricsListen); err != nil {
			s.log.Warn("metrics endpoint not started", "metrics_listen", s.o.MetricsListen, "err", err)
		} else {
			s.setAddr(&s.metric, ln.Addr().String())
			s.log.Info("serving metrics", "metrics_listen", ln.Addr().String())
			wg.Go(func() { s.serveMetrics(ctx, ln) })
		}
	}
	close(s.ready)
	wg.Wait()
	return nil
}

func (s *Server) setAddr(p *string, v string) {
	s.mu.Lock()
	*p = v
	s.mu.Unlock()
}

// MetricsAddr is the bound metrics address ("" if none) once Run has
// set up its listeners; it waits for that.
func (s *Server) MetricsAddr(ctx context.Context) string {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metric
}

// Status builds the document the control socket answers.
func (s *Server) Status() Status {
	snap := s.o.Agent.Snapshot()
	st := Status{
		Version: s.o.Version, PID: os.Getpid(), Started: s.started, Thing: s.o.Thing, MaxTunnels: s.o.MaxTunnels,
		Tunnels: snap.Tunnels, Ended: snap.Ended, Traffic: snap.Traffic, Notifications: s.m.notifications(),
		BadRequests: s.m.bad.Load(),
	}
	if snap.MaxTunnels > 0 {
		st.MaxTunnels = snap.MaxTunnels
	}
	if st.Tunnels == nil {
		st.Tunnels = []agent.TunnelStatus{}
	}
	if st.Ended == nil {
		st.Ended = []agent.EndedTunnel{}
	}
	if s.o.Source != nil {
		src := s.o.Source()
		st.Source = &src
	}
	if s.o.Queue != nil {
		q := s.o.Queue.Stats()
		st.Audit = &q
	}
	return st
}

// errorDoc is the answer to a request the socket does not serve.
type errorDoc struct {
	Error string `json:"error"`
}

func badRequest(format string, a ...any) errorDoc { return errorDoc{Error: fmt.Sprintf(format, a...)} }
