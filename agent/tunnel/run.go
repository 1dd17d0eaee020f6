package tunnel

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Run connects, serves and reconnects until ctx ends (nil), the service
// closes the tunnel (nil), or the service refuses the handshake (an error
// wrapping ErrRejected and a *HandshakeError). Network errors and 5xx answers
// are retried with full-jitter exponential backoff, with the same client
// token, and every stream is reset on reconnect. Run may be called once.
func (s *Session) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.used || s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.used = true
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		s.closeListeners()
		wg.Wait()
	}()
	d, err := s.dialer()
	if err != nil {
		return err
	}
	s.acceptLoops(ctx, &wg)
	for attempt := 0; ; attempt++ {
		err := s.connectOnce(ctx, d)
		if ctx.Err() != nil || errors.Is(err, errTunnelClosed) {
			if err != nil && ctx.Err() == nil {
				s.log.Info("the tunnel was closed by the service", logReason, err.Error())
			}
			return nil
		}
		if !isRetryable(err) {
			s.log.Error("giving up on the tunnel", logErr, err)
			return err
		}
		if errors.Is(err, errHealthy) {
			attempt = 0
		}
		delay := s.backoff(attempt)
		s.log.Warn("tunnel connection failed; reconnecting", logErr, err, logDelay, delay, logAttempt, attempt+1)
		s.emit(Event{Kind: EventReconnecting, Duration: delay, Err: err})
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// errConnected marks the end of a link that was up; errHealthy one that
// was up for healthyAfter or carried DATA, after which the backoff
// restarts. A link that a broken or hostile service accepts and drops at
// once keeps backing off.
var (
	errConnected = errors.New("tunnel connection lost")
	errHealthy   = errors.New("tunnel connection lost after it worked")
)

// healthyAfter is how long a link must stay up, without DATA, for the
// reconnect backoff to start over.
const healthyAfter = 30 * time.Second

func (s *Session) connectOnce(ctx context.Context, d *websocket.Dialer) error {
	ws, channelID, err := s.dial(ctx, d)
	if err != nil {
		return err
	}
	l := newLink(s, ws, channelID)
	s.log.Info("tunnel connected", logChannel, channelID, logSubproto, ws.Subprotocol())
	s.emit(Event{Kind: EventConnected, ChannelID: channelID, Subprotocol: ws.Subprotocol()})
	up := time.Now()
	err = l.serve(ctx)
	healthy := l.carried.Load() || time.Since(up) >= healthyAfter
	reason := "cancelled"
	if ctx.Err() == nil {
		reason = err.Error()
	}
	s.emit(Event{Kind: EventDisconnected, ChannelID: channelID, Reason: reason, Err: err})
	if errors.Is(err, errTunnelClosed) {
		return err
	}
	if healthy {
		return fmt.Errorf("%w: %w", errHealthy, err)
	}
	return fmt.Errorf("%w: %w", errConnected, err)
}

// backoff returns a full-jitter delay: uniform in [0, min(max, min*2^n)).
func (s *Session) backoff(n int) time.Duration {
	ceil := s.cfg.ReconnectMax
	if n < 30 {
		ceil = min(ceil, s.cfg.ReconnectMin<<n)
	}
	return rand.N(ceil) + 1
}

// setLink publishes a link that is ready for source connections.
func (s *Session) setLink(l *link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == l || l.ctx.Err() != nil {
		return
	}
	s.cur = l
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Session) clearLink(l *link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == l {
		s.cur = nil
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// waitLink returns the ready link, waiting up to d for one.
func (s *Session) waitLink(ctx context.Context, d time.Duration) *link {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		s.mu.Lock()
		l, ch := s.cur, s.changed
		s.mu.Unlock()
		if l != nil {
			return l
		}
		select {
		case <-ch:
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
