package notify

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/tunnel-agent/tunnel-agent/agent/backoff"
)

// State is the MQTT connection state reported to OnState.
type State int

// Connection states.
const (
	StateConnecting State = iota
	StateConnected        // CONNACK received, subscribing
	StateSubscribed       // receiving notifications
	StateRetrying         // waiting before the next attempt
)

func (s State) String() string {
	return [...]string{"connecting", "connected", "subscribed", "retrying"}[s]
}

// StateInfo is one state change. Cause and RetryIn are set for StateRetrying.
type StateInfo struct {
	State   State
	Broker  string
	Cause   *Cause
	RetryIn time.Duration
	Attempt int // failures in a row
}

// outcome is how one connection ended.
type outcome struct {
	cause        Cause
	up           time.Duration // how long it was connected (0: never)
	reconfigured bool          // the settings changed: connect again now
	redeliver    bool          // reconnect now to get untaken messages again
}

// Run connects, subscribes on every connection and hands each payload to
// deliver, until ctx is cancelled (nil). Failed attempts are retried with
// full-jitter backoff, reset by a connection that stayed up StableAfter;
// each failure is logged with its classified cause (rate-limited).
func (s *MQTTSource) Run(ctx context.Context, deliver func([]byte) bool, ready func()) error {
	failures := 0
	for {
		out := s.session(ctx, deliver, ready)
		if ctx.Err() != nil {
			return nil
		}
		c := s.current()
		if out.reconfigured || out.redeliver || out.up >= c.cfg.StableAfter {
			failures = 0
		}
		if out.reconfigured || out.redeliver {
			continue
		}
		failures++
		bo := backoff.Backoff{Min: c.cfg.MinReconnectInterval, Max: c.cfg.MaxReconnectInterval}
		delay := bo.Delay(failures)
		s.logRetry(c, out.cause, failures, delay)
		s.state(StateInfo{State: StateRetrying, Broker: c.addr, Cause: &out.cause, RetryIn: delay, Attempt: failures})
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.reconf:
			t.Stop()
			failures = 0
		case <-t.C:
		}
	}
}

// Check makes one connection and subscription with the configured
// settings and returns nil once subscribed, or the classified Cause. It
// acknowledges nothing, so queued notifications stay for the agent.
func (s *MQTTSource) Check(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subscribed := false
	out := s.session(ctx, func([]byte) bool { return false }, func() { subscribed = true; cancel() })
	if subscribed {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return out.cause
}

func (s *MQTTSource) state(i StateInfo) {
	s.book.note(i, s.current())
	if f := s.current().cfg.OnState; f != nil {
		f(i)
	}
}

// session is one connection: connect, subscribe, serve until it ends.
func (s *MQTTSource) session(ctx context.Context, deliver func([]byte) bool, ready func()) outcome {
	c := s.current()
	s.state(StateInfo{State: StateConnecting, Broker: c.addr})
	at := &attempt{ctx: ctx}
	lost := make(chan error, 1)
	untaken := make(chan struct{}, 1)
	client := mqtt.NewClient(s.options(c, at, deliver, lost, untaken))
	tok := client.Connect()
	stop := context.AfterFunc(ctx, at.abort)
	<-tok.Done()
	stop()
	if err := tok.Error(); err != nil {
		return outcome{cause: s.classify(c, err, at.handshakeDone.Load(), 0)}
	}
	connectedAt := time.Now()
	defer client.Disconnect(250)
	s.client.Store(&client)
	defer s.client.Store(nil)
	s.log.Info("mqtt connected", attrBroker, c.addr, attrClientID, c.cfg.ClientID)
	s.state(StateInfo{State: StateConnected, Broker: c.addr})
	if cause, ok := s.subscribe(ctx, client, c, lost, connectedAt); !ok {
		return outcome{cause: cause}
	}
	s.state(StateInfo{State: StateSubscribed, Broker: c.addr})
	ready()
	var redeliver <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return outcome{}
		case err := <-lost:
			up := time.Since(connectedAt)
			return outcome{cause: s.classify(c, err, true, up), up: up}
		case <-s.reconf:
			s.log.Info("mqtt settings changed; reconnecting", attrBroker, s.current().addr)
			return outcome{reconfigured: true}
		case <-untaken:
			if redeliver == nil {
				redeliver = time.After(c.cfg.RedeliverAfter)
			}
		case <-redeliver:
			s.log.Info("reconnecting so that the broker redelivers the notifications the agent could not take")
			return outcome{redeliver: true}
		}
	}
}

func (s *MQTTSource) classify(c *conf, err error, handshakeDone bool, up time.Duration) Cause {
	return classify(err, classifyParams{broker: c.addr, clientID: c.cfg.ClientID, handshakeDone: handshakeDone,
		up: up, takeover: min(takeoverWindow, c.cfg.StableAfter), certNotAfter: c.certNotAfter, now: time.Now()})
}

// logRetry logs a failure with its cause: a warning when the cause is new
// or retryWarnEvery has passed, debug otherwise (device flash is finite).
func (s *MQTTSource) logRetry(c *conf, cause Cause, n int, delay time.Duration) {
	attrs := []any{attrCause, string(cause.Kind), attrErr, cause.Detail, attrHint, cause.Hint, attrBroker, c.addr,
		attrClientID, c.cfg.ClientID, attrAttempt, n, attrRetryIn, delay.Round(time.Millisecond).String()}
	now := time.Now()
	if cause.Kind == s.lastKind && now.Sub(s.lastWarn) < retryWarnEvery {
		s.suppressed++
		s.log.Debug("mqtt connection failed; retrying", attrs...)
		return
	}
	if s.suppressed > 0 {
		attrs = append(attrs, attrRepeatsNotShown, s.suppressed)
	}
	s.lastKind, s.lastWarn, s.suppressed = cause.Kind, now, 0
	s.log.Warn("mqtt connection failed; retrying", attrs...)
}

func (s *MQTTSource) options(c *conf, at *attempt, deliver func([]byte) bool, lost chan<- error, untaken chan<- struct{}) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker((&url.URL{Scheme: "tls", Host: c.addr}).String()).
		SetClientID(c.cfg.ClientID).
		SetProtocolVersion(4).  // no silent fall back to MQTT 3.1 after a refusal
		SetCleanSession(false). // the broker keeps QoS 1 messages while we are away
		SetOrderMatters(true).
		SetKeepAlive(0). // keepaliveConn pings, and writes KeepAlive in the CONNECT
		SetConnectTimeout(c.cfg.ConnectTimeout).
		SetWriteTimeout(c.cfg.ConnectTimeout). // bounds a Subscribe stuck on a lost connection
		SetConnectRetry(false).
		SetAutoReconnect(false). // Run reconnects, with jitter and a cause
		SetResumeSubs(false).
		SetAutoAckDisabled(true). // acknowledged once the agent took it
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
			conn, err := dialTLS(at, c.addr, c.tls, c.proxy, c.cfg.ConnectTimeout)
			if err != nil {
				return nil, err
			}
			return newKeepaliveConn(conn, c.cfg.KeepAlive), nil
		})
	// The route exists before Connect: a stored session can deliver before
	// we subscribe again.
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		if m.Topic() != c.topic {
			m.Ack()
			return
		}
		if deliver(m.Payload()) {
			m.Ack()
			return
		}
		select {
		case untaken <- struct{}{}:
		default:
		}
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		select {
		case lost <- err:
		default:
		}
	})
	return o
}

// subackPacketIDInUse is MQTT 5's SUBACK code "packet identifier in use".
// mochi-mqtt (the emulator's embedded broker) sends it to MQTT 3.1.1
// clients too, when the SUBSCRIBE's packet id equals the id of a QoS 1
// message it is redelivering to us from the stored session. The two
// directions number their packets independently [MQTT-2.3.1], so this is
// no refusal: the subscription is asked for again (paho takes the next id).
const subackPacketIDInUse = 0x91

// subscribeAttempts bounds the SUBSCRIBEs sent for subackPacketIDInUse.
const subscribeAttempts = 4

// subscribeAside calls paho's Subscribe, then closes done. Subscribe
// itself blocks (up to its WriteTimeout, the connect timeout) when the
// connection is lost under it, e.g. taken over by another client with our
// id: subscribe runs it on a goroutine of its own so that ctx and the
// timeout still end the wait, and that goroutine may outlive subscribe by
// that long (the package's goleak check knows it by this name).
func subscribeAside(cl mqtt.Client, topic string, tok *mqtt.Token, done chan<- struct{}) {
	*tok = cl.Subscribe(topic, 1, nil)
	close(done)
}

// subscribe makes the subscription and checks the SUBACK code. A connection
// lost meanwhile (lost) is classified like one lost later.
func (s *MQTTSource) subscribe(ctx context.Context, cl mqtt.Client, c *conf, lost <-chan error, connectedAt time.Time) (Cause, bool) {
	t := time.NewTimer(c.cfg.ConnectTimeout)
	defer t.Stop()
	var code byte
	timeout := Cause{Kind: CauseTimeout, Detail: "no SUBACK within " + c.cfg.ConnectTimeout.String(),
		Hint: "the broker did not answer the subscription; reconnecting"}
	// interrupted waits for done and reports what cut the wait short, if
	// anything did: ctx, the timeout or the connection's loss.
	interrupted := func(done <-chan struct{}) (Cause, bool) {
		select {
		case <-ctx.Done():
			return Cause{}, true
		case <-t.C:
			return timeout, true
		case err := <-lost:
			return s.classify(c, err, true, time.Since(connectedAt)), true
		case <-done:
			return Cause{}, false
		}
	}
	for try := 1; ; try++ {
		var tok mqtt.Token
		subscribed := make(chan struct{})
		go subscribeAside(cl, c.topic, &tok, subscribed)
		if cause, cut := interrupted(subscribed); cut {
			return cause, false
		}
		if cause, cut := interrupted(tok.Done()); cut {
			return cause, false
		}
		if err := tok.Error(); err != nil {
			return Cause{Kind: CauseLost, Detail: "subscribe: " + err.Error(), Hint: "reconnecting", Err: err}, false
		}
		code = 0
		if st, isSub := tok.(*mqtt.SubscribeToken); isSub {
			code = st.Result()[c.topic]
		}
		if code != subackPacketIDInUse || try == subscribeAttempts {
			break
		}
		s.log.Debug("the broker reports the SUBSCRIBE's packet id in use (a redelivery took it); subscribing again",
			attrTopic, c.topic, attrAttempt, try)
	}
	if code <= 2 {
		s.log.Info("subscribed", attrTopic, c.topic, attrQoS, code)
		return Cause{}, true
	}
	return Cause{Kind: CauseSubscribe, Err: ErrSubscribeRefused,
		Detail: fmt.Sprintf("the broker refused the subscription to %s (SUBACK 0x%02x)", c.topic, code),
		Hint: fmt.Sprintf("check the device policy allows iot:Subscribe on arn:aws:iot:<region>:<account>:topicfilter/%s "+
			"and iot:Receive on arn:aws:iot:<region>:<account>:topic/%s", c.topic, c.topic)}, false
}
