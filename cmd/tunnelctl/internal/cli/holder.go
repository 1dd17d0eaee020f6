package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
)

// holdWait bounds how long a new holder waits for the previous one to go.
const holdWait = 15 * time.Second

// holderCommand is the hidden command connect starts (detached) to hold a shared tunnel.
const holderCommand = "connect-holder"

// holder holds one shared tunnel: it opens (or resumes) it, runs its source
// side on a private socket, and serves the connect processes on the key's
// socket until no connection has been open for the idle grace.
type holder struct {
	a                   *App
	api                 *awsapi.Client
	cache               *connectCache
	key, thing, service string
	o                   connectOptions
	data                dataPlane
	log                 *slog.Logger
	minutes             int
}

func (a *App) cmdConnectHolder(ctx context.Context, g *globals, args []string) error {
	fs := g.flags(holderCommand, a.Stderr, withData)
	h := &holder{a: a}
	h.o.register(fs)
	fs.StringVar(&h.key, "key", "", "tunnel key")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if h.thing, h.service, err = connectTarget(pos); err != nil {
		return err
	}
	if h.minutes, err = parseLifetime(h.o.lifetime); err != nil {
		return err
	}
	if h.api, err = g.client(ctx); err != nil {
		return err
	}
	if h.data, err = a.resolveDataPlane(g, h.api); err != nil {
		return err
	}
	if h.cache, err = openCache(a.Getenv); err != nil {
		return err
	}
	h.log = a.newLogger(g.verbose)
	return h.run(ctx)
}

// run holds the tunnel until it is idle, closed by the service, or ctx ends.
func (h *holder) run(ctx context.Context) error {
	// Another holder may have the key: one that is closing (idle) is gone in a
	// moment, and this one takes over; one that is starting or serving keeps
	// it, and the waiting connect attaches to that one's socket.
	lctx, cancel := context.WithTimeout(ctx, holdWait)
	hold, err := lockFile(lctx, h.cache.holdFile(h.key))
	cancel()
	if err != nil {
		h.log.Info("another holder has the tunnel", "err", err)
		return nil
	}
	defer hold.release()
	st, ended, cancel, err := h.start(ctx)
	if err != nil {
		return err
	}
	closeTunnel := true
	defer func() {
		cancel()
		<-ended.done
		h.cache.dropState(h.key)
		if closeTunnel {
			h.closeTunnel(st.TunnelID)
		}
	}()
	ln, err := h.listen()
	if err != nil {
		return err
	}
	h.log.Info("serving the shared tunnel", "tunnel", st.TunnelID, "thing", h.thing, "service", h.service, "socket", h.cache.socket(h.key))
	err = h.serve(ctx, ln, ended)
	if errors.Is(err, errTunnelEnded) {
		closeTunnel = false
	}
	return err
}

// start resumes the saved tunnel of the key or opens one, and waits until the
// device is connected.
func (h *holder) start(ctx context.Context) (*tunnelState, *sessionEnd, context.CancelFunc, error) {
	saved, err := h.cache.loadState(h.key, time.Now())
	if err != nil {
		return nil, nil, nil, err
	}
	if saved != nil {
		d, derr := h.api.DescribeTunnel(ctx, &awsapi.DescribeTunnelInput{TunnelID: saved.TunnelID})
		if derr == nil && d.Tunnel.Status == awsapi.StatusOpen {
			ended, cancel, err := h.connect(ctx, saved)
			if err == nil {
				saved.PID = os.Getpid()
				if err := h.cache.saveState(h.key, saved); err != nil {
					h.log.Warn("updating the tunnel state failed", "err", err)
				}
				h.log.Info("resumed the saved tunnel", "tunnel", saved.TunnelID)
				return saved, ended, cancel, nil
			}
			h.log.Warn("could not resume the saved tunnel: opening another", "tunnel", saved.TunnelID, "err", err)
			h.closeTunnel(saved.TunnelID)
		}
		h.cache.dropState(h.key)
	}
	open, err := h.api.OpenTunnel(ctx, &awsapi.OpenTunnelInput{
		Description:       "tunnelctl connect " + h.thing,
		DestinationConfig: &awsapi.DestinationConfig{ThingName: h.thing, Services: []string{h.service}},
		TimeoutConfig:     &awsapi.TimeoutConfig{MaxLifetimeTimeoutMinutes: h.minutes},
	})
	if err != nil {
		return nil, nil, nil, errors.New(describeError(err))
	}
	st := &tunnelState{TunnelID: open.TunnelID, Thing: h.thing, Service: h.service, SourceToken: open.SourceAccessToken,
		ClientToken: tunnel.NewClientToken(), Expires: time.Now().Add(time.Duration(h.minutes) * time.Minute), PID: os.Getpid()}
	if err := h.cache.saveState(h.key, st); err != nil {
		h.closeTunnel(st.TunnelID)
		return nil, nil, nil, err
	}
	h.log.Info("opened a tunnel", "tunnel", st.TunnelID, "thing", h.thing, "service", h.service)
	ended, cancel, err := h.connect(ctx, st)
	if err != nil {
		h.cache.dropState(h.key)
		h.closeTunnel(st.TunnelID)
		return nil, nil, nil, err
	}
	return st, ended, cancel, nil
}

// connect runs the source side of st on the private socket and waits for the device.
func (h *holder) connect(ctx context.Context, st *tunnelState) (*sessionEnd, context.CancelFunc, error) {
	inner := h.cache.inner(h.key)
	_ = os.Remove(inner)
	watch := &sourceWatch{connected: make(chan struct{}, 1)}
	sess, err := tunnel.New(tunnel.Config{
		Mode: tunnel.ModeSource, Endpoint: h.data.endpoint, Region: h.data.region, AccessToken: st.SourceToken,
		ClientToken: st.ClientToken, CAFile: h.data.caFile, RootCAs: h.data.roots,
		Services: map[string]string{h.service: "unix:" + inner}, DestinationClientType: strings.ToUpper(h.o.clientType),
		Logger: h.log, ConnBufferSize: sourceConnBuffer, OnEvent: watch.onEvent,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("starting the source proxy: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ended := &sessionEnd{done: make(chan struct{})}
	go func() { ended.err = sess.Run(sctx); close(ended.done) }()
	o := &sshOptions{thing: h.thing, wait: h.o.wait, data: h.data}
	if err := h.a.waitForDevice(ctx, h.api, st.TunnelID, o, watch, ended); err != nil {
		cancel()
		<-ended.done
		return nil, nil, err
	}
	return ended, cancel, nil
}

// listen binds the key's socket, replacing a stale one (the key's lock and the
// hold lock make sure no live holder owns it).
func (h *holder) listen() (*net.UnixListener, error) {
	path := h.cache.socket(h.key)
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

// errTunnelEnded: the service closed the tunnel (or its lifetime ended).
var errTunnelEnded = errors.New("the tunnel was closed by the service")

// acceptor hands the listener's connections to serve. A deadline (idleClose)
// makes it report on timeouts and wait for resume (or quit) before accepting again.
type acceptor struct {
	ln       *net.UnixListener
	conns    chan net.Conn
	timeouts chan struct{}
	resume   chan struct{}
	failed   chan error // one send: the listener failed or was closed
	quit     chan struct{}
	done     chan struct{}
}

func startAcceptor(ln *net.UnixListener) *acceptor {
	ac := &acceptor{ln: ln, conns: make(chan net.Conn), timeouts: make(chan struct{}), resume: make(chan struct{}),
		failed: make(chan error, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go ac.loop()
	return ac
}

func (ac *acceptor) loop() {
	defer close(ac.done)
	for {
		c, err := ac.ln.Accept()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			select {
			case ac.timeouts <- struct{}{}:
			case <-ac.quit:
				return
			}
			select {
			case <-ac.resume:
			case <-ac.quit:
				return
			}
		case err != nil:
			ac.failed <- err
			return
		default:
			select {
			case ac.conns <- c:
			case <-ac.quit:
				_ = c.Close()
				return
			}
		}
	}
}

// stop closes the listener and waits for the loop.
func (ac *acceptor) stop() {
	_ = ac.ln.Close()
	close(ac.quit)
	<-ac.done
}

// serve accepts connections until the idle grace passes with none open, the
// session ends, or ctx ends. It waits for every connection it started.
func (h *holder) serve(ctx context.Context, ln *net.UnixListener, ended *sessionEnd) error {
	ac := startAcceptor(ln)
	var wg sync.WaitGroup
	connCtx, stopConns := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		ac.stop()
		stopConns()
		wg.Wait()
	}()
	finished := make(chan struct{})
	active := 0
	start := func(c net.Conn) {
		active++
		wg.Go(func() {
			h.relay(connCtx, c)
			select {
			case finished <- struct{}{}:
			case <-connCtx.Done():
			}
		})
	}
	idle := time.NewTimer(h.o.idle)
	defer idle.Stop()
	for {
		select {
		case c := <-ac.conns:
			idle.Stop()
			start(c)
		case <-finished:
			if active--; active == 0 {
				idle.Reset(h.o.idle)
			}
		case <-ac.timeouts: // a late idle-close deadline after a connection arrived
			_ = ln.SetDeadline(time.Time{})
			ac.resume <- struct{}{}
		case <-idle.C:
			if active > 0 {
				continue
			}
			c, closing := h.idleClose(ctx, ac)
			switch {
			case c != nil:
				start(c)
			case closing:
				h.log.Info("closing the idle tunnel", "idle", h.o.idle)
				return nil
			default:
				idle.Reset(h.o.idle)
			}
		case err := <-ac.failed:
			return fmt.Errorf("accepting on %s: %w", h.cache.socket(h.key), err)
		case <-ended.done:
			if ended.err != nil {
				return fmt.Errorf("source proxy: %w", ended.err)
			}
			return errTunnelEnded
		case <-ctx.Done():
			return nil
		}
	}
}

// idleClose stops accepting if no connect process is about to attach: it takes
// the key's lock (every dial happens under it), then accepts with a deadline to
// collect a connection dialed just before. It returns that connection, or
// closing=true when the listener was closed.
func (h *holder) idleClose(ctx context.Context, ac *acceptor) (net.Conn, bool) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	h.log.Debug("idle: taking the key's lock before closing")
	lock, err := lockFile(lctx, h.cache.lockFile(h.key))
	if err != nil {
		return nil, false // a connect is waiting or ctx ended: try again later
	}
	defer lock.release()
	_ = ac.ln.SetDeadline(time.Now().Add(100 * time.Millisecond))
	select {
	case c := <-ac.conns:
		_ = ac.ln.SetDeadline(time.Time{})
		return c, false
	case <-ac.timeouts: // nothing was waiting
		_ = ac.ln.Close() // removes the socket (SetUnlinkOnClose) under the lock
		return nil, true
	case <-ac.failed:
		return nil, true
	}
}

// relay joins one connect process to a new connection through the tunnel.
func (h *holder) relay(ctx context.Context, c net.Conn) {
	defer c.Close()
	t, err := net.Dial("unix", h.cache.inner(h.key))
	if err != nil {
		h.log.Warn("reaching the source proxy failed", "err", err)
		return
	}
	defer t.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close(); _ = t.Close() })
	defer stop()
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	wg.Go(func() { half(t, c) })
	half(c, t)
	wg.Wait()
}

// closeTunnel closes the tunnel, also after ctx ended.
func (h *holder) closeTunnel(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.api.CloseTunnel(ctx, &awsapi.CloseTunnelInput{TunnelID: id}); err != nil {
		h.log.Warn("closing the tunnel failed: close it with tunnelctl close", "tunnel", id, "err", describeError(err))
		return
	}
	h.log.Info("closed the tunnel", "tunnel", id)
}
