package fakenucleus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
)

// Config configures a Nucleus.
type Config struct {
	SocketPath string // the IPC socket; created by New, removed by Run's end
	ThingName  string // the core device's thing, for {iot:thingName}
	// Components maps each SVCUID to the component it was handed to.
	Components map[string]Component
	// InterpolateComponentConfiguration replaces {iot:thingName} in
	// accessControl resources (the nucleus setting of the same name, >= 2.6).
	InterpolateComponentConfiguration bool
	MQTT                              MQTT
	Logger                            *slog.Logger
}

// Nucleus serves the IPC socket.
type Nucleus struct {
	cfg    Config
	ln     net.Listener
	router *router
	log    *slog.Logger

	mu    sync.Mutex
	conns map[*conn]struct{}
}

// New listens on cfg.SocketPath.
func New(cfg Config) (*Nucleus, error) {
	if cfg.MQTT == nil || cfg.SocketPath == "" || len(cfg.Components) == 0 {
		return nil, errors.New("fakenucleus: SocketPath, Components and MQTT are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("unix", cfg.SocketPath)
	if err != nil {
		return nil, fmt.Errorf("fakenucleus: listen: %w", err)
	}
	return &Nucleus{cfg: cfg, ln: ln, router: newRouter(cfg.MQTT), log: cfg.Logger,
		conns: map[*conn]struct{}{}}, nil
}

// SocketPath is the IPC socket (AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT).
func (n *Nucleus) SocketPath() string { return n.cfg.SocketPath }

// Run accepts component connections until ctx is cancelled, then closes them
// all and returns nil.
func (n *Nucleus) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { _ = n.ln.Close() })
	defer stop()
	var err error
	for {
		c, aerr := n.ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("fakenucleus: accept: %w", aerr)
			}
			break
		}
		cn := newConn(n, c)
		n.mu.Lock()
		n.conns[cn] = struct{}{}
		n.mu.Unlock()
		wg.Go(func() {
			cn.serve()
			n.mu.Lock()
			delete(n.conns, cn)
			n.mu.Unlock()
		})
	}
	_ = n.ln.Close()
	n.DropConnections()
	wg.Wait()
	_ = os.Remove(n.cfg.SocketPath)
	return err
}

// DropConnections closes every component connection, as a nucleus restart
// does; components see their socket lost.
func (n *Nucleus) DropConnections() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.conns {
		_ = c.c.Close()
	}
}
