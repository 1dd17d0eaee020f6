package notify

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// pingTimeoutMax bounds the wait for the broker's answer to a PINGREQ
// (paho's default PingTimeout).
const pingTimeoutMax = 10 * time.Second

// pingreq is MQTT's PINGREQ packet: type 12, no flags, no body
// [MQTT-3.12].
var pingreq = []byte{0xc0, 0x00}

// errPingUnanswered ends a connection whose broker stopped answering.
var errPingUnanswered = errors.New("no answer to an MQTT PINGREQ")

// keepaliveConn does MQTT's keepalive in place of paho, whose checker wakes
// every 5 s whatever the keepalive (ping.go in paho v1.5): 12 timer events a
// minute, three quarters of an idle agent's. paho runs with KeepAlive 0, so
// it starts no checker and writes 0 in its CONNECT; the first Write, which
// is that CONNECT in one piece, gets the real interval instead, so the
// broker knows it as before. Then one timer fires when a PINGREQ is due:
// nothing sent, or nothing received, for the interval (as paho decides).
// Sending it sets the timer to the ping timeout: if nothing was read since,
// the connection is closed, and paho reads that as a lost connection with
// errPingUnanswered; else the timer is set for the next PINGREQ. Two timer
// events per interval, where paho's checker has 12 a minute. (Moving the
// timer at the answer instead would save nothing: the runtime still wakes
// at a timer's old time when it was moved later.)
//
// paho's own writer and the timer both write; tls.Conn serialises whole
// Writes and each packet is one Write, as with paho's checker.
type keepaliveConn struct {
	net.Conn
	interval, timeout time.Duration
	base              time.Time    // monotonic origin of the times below
	sent, received    atomic.Int64 // ns since base of the last write, read
	pinged            atomic.Int64 // ns since base of the PINGREQ awaiting its timeout check; 0 if none
	connected         atomic.Bool  // the CONNECT went out
	dead              atomic.Bool  // closed for an unanswered PINGREQ

	mu     sync.Mutex // guards timer and closed
	timer  *time.Timer
	closed bool
}

func newKeepaliveConn(c net.Conn, interval time.Duration) *keepaliveConn {
	return &keepaliveConn{Conn: c, interval: interval, timeout: min(pingTimeoutMax, interval/2), base: time.Now()}
}

// keepaliveSeconds is the interval as MQTT's 16-bit CONNECT field: whole
// seconds, at least 1.
func keepaliveSeconds(d time.Duration) uint16 {
	s := (d + time.Second - 1) / time.Second
	return uint16(min(max(s, 1), 65535))
}

// patchConnect returns a copy of the CONNECT packet p with its keepalive
// field set to secs, or an error if p is not a CONNECT.
func patchConnect(p []byte, secs uint16) ([]byte, error) {
	if len(p) < 2 || p[0] != 0x10 {
		return nil, fmt.Errorf("mqtt keepalive: the first packet is not a CONNECT (type byte %#x)", firstByte(p))
	}
	i := 1 // remaining length: 1 to 4 bytes, 7 bits each
	for ; i < len(p) && i <= 4 && p[i]&0x80 != 0; i++ {
	}
	i++
	if i+2 > len(p) {
		return nil, errors.New("mqtt keepalive: CONNECT cut short")
	}
	name := int(p[i])<<8 | int(p[i+1]) // protocol name, then level and flags
	at := i + 2 + name + 2
	if at+2 > len(p) {
		return nil, errors.New("mqtt keepalive: CONNECT cut short")
	}
	q := append([]byte(nil), p...)
	q[at], q[at+1] = byte(secs>>8), byte(secs)
	return q, nil
}

func firstByte(p []byte) byte {
	if len(p) == 0 {
		return 0
	}
	return p[0]
}

func (c *keepaliveConn) now() int64 { return int64(time.Since(c.base)) }

func (c *keepaliveConn) Write(p []byte) (int, error) {
	if !c.connected.Load() {
		q, err := patchConnect(p, keepaliveSeconds(c.interval))
		if err != nil {
			return 0, err
		}
		if _, err := c.Conn.Write(q); err != nil {
			return 0, err
		}
		c.connected.Store(true)
		c.sent.Store(c.now())
		c.received.Store(c.now())
		c.arm(c.interval)
		return len(p), nil
	}
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.sent.Store(c.now())
	}
	return n, err
}

func (c *keepaliveConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.received.Store(c.now())
	}
	if err != nil && c.dead.Load() {
		err = fmt.Errorf("%w within %s: closed the connection", errPingUnanswered, c.timeout)
	}
	return n, err
}

// arm sets the timer to fire in d, creating it on first use.
func (c *keepaliveConn) arm(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
	case c.timer == nil:
		c.timer = time.AfterFunc(d, c.tick)
	default:
		c.timer.Reset(d)
	}
}

// tick runs on the timer: it closes the connection when nothing was read
// since the PINGREQ it sent, else sends one when due or sets the timer for
// when it is.
func (c *keepaliveConn) tick() {
	if p := c.pinged.Load(); p != 0 {
		if c.received.Load() < p {
			c.mu.Lock()
			closed := c.closed
			c.mu.Unlock()
			if !closed {
				c.dead.Store(true)
				_ = c.Conn.Close()
			}
			return
		}
		c.pinged.Store(0) // answered
	}
	now := c.now()
	if due := min(c.sent.Load(), c.received.Load()) + int64(c.interval); now < due {
		c.arm(time.Duration(due - now))
		return
	}
	c.pinged.Store(now)
	c.arm(c.timeout) // first: a write stuck on a dead link is ended by the timeout
	if _, err := c.Conn.Write(pingreq); err == nil {
		c.sent.Store(c.now())
	}
}

func (c *keepaliveConn) Close() error {
	c.mu.Lock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
