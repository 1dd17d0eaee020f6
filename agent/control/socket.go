package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

// Bounds of the control socket: what one client may send, how long it may
// take, and how many are served at once (more are told the agent is busy).
const (
	MaxRequest     = 1024
	RequestTimeout = 5 * time.Second
	MaxClients     = 16
	// RequestStatus is the one request the socket answers.
	RequestStatus = "status"
	busyText      = "agent busy"

	acceptRetryMin = 5 * time.Millisecond
)

// listenControl binds the socket with mode 0660 (the group, tunnel-agent
// under the unit, may read the status). A stale socket left by a crashed
// agent is replaced; a live one or any other file is not.
func listenControl(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: remove it or set control_socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("another agent is serving %s: give each agent its own control_socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on the control socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("set the control socket's mode: %w", err)
	}
	return ln, nil
}

// serveControl answers clients until ctx ends.
func (s *Server) serveControl(ctx context.Context, ln net.Listener) {
	serveConns(ctx, s.log, ln, MaxClients, s.handle, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		writeDoc(c, badRequest("%s: more than %d clients at once; retry", busyText, MaxClients))
	})
}

// serveConns runs handle for each accepted connection, at most limit at
// once; up to limit more get busy, and beyond that a connection is closed
// at once. When ctx ends it closes the listener and every open connection
// and waits for the handlers.
func serveConns(ctx context.Context, log *slog.Logger, ln net.Listener, limit int, handle, busy func(net.Conn)) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	slots := make(chan struct{}, limit)
	busySlots := make(chan struct{}, limit) // to say "busy"
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	defer func() {
		if !stop() {
			<-stopped
		} else {
			_ = ln.Close()
		}
		wg.Wait()
	}()
	delay := acceptRetryMin
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or similar: wait, then go on.
			if delay == acceptRetryMin {
				log.Warn("cannot accept a client; retrying", "addr", ln.Addr().String(), "err", err)
			}
			delay = min(2*delay, time.Second)
			select {
			case <-ctx.Done():
				return
			case <-time.After(rand.N(delay) + 1):
			}
			continue
		}
		delay = acceptRetryMin
		var run func(net.Conn)
		var slot chan struct{}
		select {
		case slots <- struct{}{}:
			run, slot = handle, slots
		default:
			select {
			case busySlots <- struct{}{}:
				run, slot = busy, busySlots
			default: // flooded: no answer at all
				_ = c.Close()
				continue
			}
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() { <-slot }()
			run(c)
			linger(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			_ = c.Close()
		})
	}
}

// linger ends our side and reads (bounded) what the client still sends,
// so that closing does not reset the connection before the client has
// read the answer.
func linger(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
}

// handle reads one request line and answers it.
func (s *Server) handle(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(s.timeout))
	req, err := readRequest(c)
	_ = c.SetWriteDeadline(time.Now().Add(s.timeout))
	if err != nil {
		s.m.badRequest()
		writeDoc(c, badRequest("%v", err))
		return
	}
	if req != RequestStatus {
		s.m.badRequest()
		writeDoc(c, badRequest("unknown request %q: the control socket answers %q (one line)", clip(req, 64), RequestStatus))
		return
	}
	writeDoc(c, s.Status())
}

// readRequest reads up to a newline (or the client's end of writing) and
// at most MaxRequest bytes.
func readRequest(r io.Reader) (string, error) {
	buf := make([]byte, MaxRequest+1)
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return string(bytes.TrimSpace(buf[:i])), nil
		}
		if errors.Is(err, io.EOF) {
			return string(bytes.TrimSpace(buf[:n])), nil
		}
		if err != nil {
			return "", fmt.Errorf("reading the request: %w", err)
		}
	}
	return "", fmt.Errorf("request longer than %d bytes: send %q and a newline", MaxRequest, RequestStatus)
}

func writeDoc(w io.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(errorDoc{Error: "encode status: " + err.Error()})
	}
	_, _ = w.Write(append(b, '\n'))
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
