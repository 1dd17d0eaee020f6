package greengrass

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Log attribute keys.
const (
	logKeyStream    = "stream_id"
	logKeyTopic     = "topic"
	logKeyErr       = "error"
	logKeyErrorType = "error_type"
	logKeyRetryIn   = "retry_in"
	logKeyBytes     = "bytes"
)

// RecipeTopicResource is the accessControl resource the shipped recipe grants
// for the notify topic (any thing: the recipe cannot rely on {iot:thingName}
// being interpolated, see configs/greengrass/README.md).
const RecipeTopicResource = "$aws/things/+/tunnels/notify"

// RecipeAuditResource is the accessControl resource the shipped recipe grants
// for PublishToIoTCore: the audit topic tunnel-agent/<thing>/events of any thing.
const RecipeAuditResource = "tunnel-agent/+/events"

// Source receives the tunnel notify topic of the core device's thing through
// Greengrass IPC. It implements notify.Source.
type Source struct {
	cfg   Config
	topic string
	pubs  chan *pubRequest // Publish -> the running session
}

// NewSource returns a Source for cfg. Config errors surface from Run.
func NewSource(cfg Config) *Source {
	cfg = cfg.withDefaults()
	return &Source{cfg: cfg, topic: Topic(cfg.ThingName), pubs: make(chan *pubRequest)}
}

// Topic is the notify topic this Source subscribes to.
func (s *Source) Topic() string { return s.topic }

// Run connects to the nucleus, subscribes to the notify topic at QoS 1, calls
// ready after each successful subscription and deliver with each message's
// decoded payload (on Run's goroutine: deliver must not block for long). It
// returns nil when ctx is cancelled, and an error when it cannot go on: socket
// lost (ErrConnectionLost; the agent should exit non-zero so the nucleus
// restarts it), token refused (ErrConnectRejected), subscription not allowed
// (ErrUnauthorized), or a connection-level protocol error (ErrProtocol).
func (s *Source) Run(ctx context.Context, deliver func(payload []byte) bool, ready func()) error {
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	c, err := dial(ctx, s.cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	inbox := make(chan readResult)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { readLoop(c, inbox, done) })
	stop := context.AfterFunc(ctx, func() { _ = c.close() })
	defer func() {
		stop()
		close(done)
		_ = c.close()
		wg.Wait()
	}()

	sess := &session{Source: s, c: c, inbox: inbox, deliver: deliver, ready: ready, pending: map[int32]*pubRequest{},
		log: s.cfg.Logger.With(logKeyTopic, s.topic)}
	err = sess.run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type readResult struct {
	m   message
	err error
}

// readLoop hands every message to the session until the socket fails or the
// session is gone.
func readLoop(c *ipcConn, inbox chan<- readResult, done <-chan struct{}) {
	for {
		m, err := c.read()
		select {
		case inbox <- readResult{m, err}:
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

// session is the state of one connection; only Run's goroutine touches it.
type session struct {
	*Source
	c       *ipcConn
	inbox   <-chan readResult
	deliver func([]byte) bool
	ready   func()
	log     *slog.Logger

	stream     int32                 // current subscription stream
	lastStream int32                 // stream ids count up from 1, shared by all operations
	pending    map[int32]*pubRequest // PublishToIoTCore streams awaiting their response
	subscribed bool                  // initial response received on stream
	failures   int                   // subscription failures since the last success
	retry      *time.Timer
}

func (s *session) run(ctx context.Context) error {
	if err := s.handshake(ctx); err != nil {
		return err
	}
	s.log.Debug("greengrass ipc connected")
	if err := s.subscribe(); err != nil {
		return err
	}
	defer func() {
		if s.retry != nil {
			s.retry.Stop()
		}
		s.failPending()
	}()
	for {
		var retryC <-chan time.Time
		if s.retry != nil {
			retryC = s.retry.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-retryC:
			s.retry = nil
			if err := s.subscribe(); err != nil {
				return err
			}
		case req := <-s.pubs:
			if err := s.startPublish(req); err != nil {
				return err
			}
		case r := <-s.inbox:
			if r.err != nil {
				return lostError(r.err)
			}
			if err := s.handle(r.m); err != nil {
				return err
			}
		}
	}
}

// handshake sends Connect and waits for an accepting ConnectAck.
func (s *session) handshake(ctx context.Context) error {
	m, err := connectMessage(s.cfg.AuthToken)
	if err != nil {
		return err
	}
	if err := s.c.send(m); err != nil {
		return err
	}
	timer := time.NewTimer(s.cfg.HandshakeTimeout)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-timer.C:
		return fmt.Errorf("%w: no ConnectAck within %s: check the nucleus logs (greengrass.log)",
			ErrConnect, s.cfg.HandshakeTimeout)
	case r := <-s.inbox:
		if r.err != nil {
			return lostError(r.err)
		}
		return checkConnectAck(r.m)
	}
}

func checkConnectAck(m message) error {
	switch {
	case m.Type == typeConnectAck && m.Flags&flagConnectionAccepted != 0:
		return nil
	case m.Type == typeConnectAck:
		return fmt.Errorf("%w: the SVCUID auth token was not accepted: the token is valid only "+
			"for the process the nucleus started; run the agent from the component's Lifecycle "+
			"and do not reuse SVCUID elsewhere", ErrConnectRejected)
	default:
		return fmt.Errorf("%w: expected ConnectAck, got %s %s", ErrProtocol, m.Type,
			sanitize(string(m.Payload)))
	}
}

// subscribe opens the next stream with a SubscribeToIoTCore request.
func (s *session) subscribe() error {
	s.lastStream++
	s.stream = s.lastStream
	s.subscribed = false
	m, err := subscribeMessage(s.stream, s.topic)
	if err != nil {
		return err
	}
	s.log.Debug("subscribing to the notify topic", logKeyStream, s.stream)
	return s.c.send(m)
}

// handle processes one message from the nucleus. A non-nil error ends Run.
func (s *session) handle(m message) error {
	switch m.Type {
	case typePing:
		return s.c.send(message{Type: typePingResponse, Payload: m.Payload})
	case typePingResponse:
		return nil
	case typeProtocolError, typeInternalError:
		return fmt.Errorf("%w: the nucleus reported %s: %s", ErrProtocol, m.Type,
			sanitize(string(m.Payload)))
	case typeApplicationMessage, typeApplicationError:
		if req, ok := s.pending[m.StreamID]; ok {
			s.finishPublish(m, req)
			return nil
		}
		if m.StreamID != s.stream {
			s.log.Debug("greengrass ipc message for an old stream dropped",
				logKeyStream, m.StreamID, "type", m.Type.String())
			return nil
		}
		return s.handleStream(m)
	default:
		return fmt.Errorf("%w: unexpected %s after the handshake", ErrProtocol, m.Type)
	}
}

// handleStream processes a message of the current subscription stream.
func (s *session) handleStream(m message) error {
	ev, err := decodeEvent(m, !s.subscribed)
	if err != nil {
		if !s.subscribed || m.Terminates() {
			s.scheduleResubscribe("bad subscription response", err)
			return nil
		}
		s.log.Warn("greengrass ipc message dropped", logKeyErr, err)
		return nil
	}
	switch ev.kind {
	case eventResponse:
		s.subscribed, s.failures = true, 0
		s.log.Info("subscribed to the notify topic through greengrass ipc", logKeyStream, s.stream)
		s.ready()
	case eventMessage:
		if ev.topic != s.topic {
			s.log.Warn("greengrass ipc message for another topic dropped", "got_topic", sanitize(ev.topic))
			break
		}
		s.log.Debug("notification received", logKeyBytes, len(ev.payload))
		_ = s.deliver(ev.payload) // IPC has no redelivery: nothing to do with false
	case eventError:
		if ev.errorType == modelUnauthorized {
			return s.unauthorized(ev)
		}
		s.scheduleResubscribe("subscription failed",
			fmt.Errorf("%s: %s", ev.errorType, ev.errorText))
		return nil
	case eventClosed:
		s.scheduleResubscribe("the nucleus closed the subscription stream", nil)
		return nil
	}
	if ev.ends {
		s.scheduleResubscribe("the nucleus closed the subscription stream", nil)
	}
	return nil
}

func (s *session) unauthorized(ev event) error {
	return fmt.Errorf("%w: %s on %s (%s): the component's configuration must carry an accessControl "+
		"entry for the IPC service aws.greengrass.ipc.mqttproxy allowing operation "+
		"aws.greengrass#SubscribeToIoTCore on resource %q (or %q); it is in the DefaultConfiguration "+
		"of configs/greengrass/recipe.yaml; if the deployment replaced accessControl, add it to the "+
		"deployment's configuration merge and deploy again (see configs/greengrass/README.md)",
		ErrUnauthorized, ev.errorType, s.topic, ev.errorText, RecipeTopicResource, s.topic)
}

// scheduleResubscribe arms the retry timer with jittered exponential backoff.
func (s *session) scheduleResubscribe(why string, err error) {
	s.subscribed = false
	if s.retry != nil {
		return
	}
	d := backoff(s.failures, s.cfg.ResubscribeMin, s.cfg.ResubscribeMax)
	s.failures++
	attrs := []any{logKeyStream, s.stream, logKeyRetryIn, d}
	if err != nil {
		attrs = append(attrs, logKeyErr, err)
	}
	s.log.Warn("greengrass ipc: "+why+"; subscribing again", attrs...)
	s.retry = time.NewTimer(d)
}

// backoff returns a delay in [d/2, d], d = min * 2^failures capped at max.
func backoff(failures int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

func lostError(err error) error {
	if errors.Is(err, ErrProtocol) || errors.Is(err, ErrMessageTooLarge) {
		return err
	}
	return fmt.Errorf("%w: %w: exiting so that the nucleus restarts the component", ErrConnectionLost, err)
}
