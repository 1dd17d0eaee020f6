package notify

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// connectPacket is the CONNECT paho writes with KeepAlive 0.
func connectPacket(t *testing.T, clientID string) []byte {
	t.Helper()
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion, cp.ClientIdentifier = "MQTT", 4, clientID
	var b bytes.Buffer
	if err := cp.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestPatchConnect(t *testing.T) {
	long := connectPacket(t, string(bytes.Repeat([]byte("x"), 200))) // two-byte remaining length
	for _, c := range []struct {
		name    string
		in      []byte
		secs    uint16
		wantErr string
	}{
		{"short client id", connectPacket(t, "pi-1"), 60, ""},
		{"two-byte remaining length", long, 1200, ""},
		{"MQTT 3.1 name", func() []byte {
			cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
			cp.ProtocolName, cp.ProtocolVersion, cp.ClientIdentifier = "MQIsdp", 3, "pi-1"
			var b bytes.Buffer
			_ = cp.Write(&b)
			return b.Bytes()
		}(), 65535, ""},
		{"not a CONNECT", []byte{0x30, 0x02, 0, 0}, 60, "not a CONNECT (type byte 0x30)"},
		{"empty", nil, 60, "not a CONNECT"},
		{"cut short", connectPacket(t, "pi-1")[:9], 60, "cut short"},
		{"length runs off the end", []byte{0x10, 0xff, 0xff}, 60, "cut short"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := patchConnect(c.in, c.secs)
			if c.wantErr != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.wantErr)) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p, err := packets.ReadPacket(bytes.NewReader(got))
			if err != nil {
				t.Fatal(err)
			}
			cp := p.(*packets.ConnectPacket)
			if cp.Keepalive != c.secs || len(got) != len(c.in) {
				t.Errorf("keepalive %d (%d bytes), want %d (%d bytes)", cp.Keepalive, len(got), c.secs, len(c.in))
			}
			if c.in[0] != 0x10 || bytes.Equal(got, c.in) {
				t.Error("the input was changed or the output was not")
			}
		})
	}
	for d, want := range map[time.Duration]uint16{time.Minute: 60, 1500 * time.Millisecond: 2, time.Millisecond: 1, 100 * time.Hour: 65535} {
		if got := keepaliveSeconds(d); got != want {
			t.Errorf("keepaliveSeconds(%s) = %d, want %d", d, got, want)
		}
	}
}

// fakeBroker is the far end of a keepaliveConn in memory: it reads packets
// and records when each arrived.
type fakeBroker struct {
	conn    net.Conn
	packets chan arrived
}

type arrived struct {
	at time.Time
	p  packets.ControlPacket
}

func newKeepalivePair(t *testing.T, interval time.Duration) (*keepaliveConn, *fakeBroker) {
	a, b := tunneltest.MemPipe(nil, nil)
	kc := newKeepaliveConn(a, interval)
	fb := &fakeBroker{conn: b, packets: make(chan arrived, 16)}
	go func() {
		defer close(fb.packets)
		for {
			p, err := packets.ReadPacket(b)
			if err != nil {
				return
			}
			fb.packets <- arrived{time.Now(), p}
		}
	}()
	t.Cleanup(func() { kc.Close(); b.Close() })
	if _, err := kc.Write(connectPacket(t, "pi-1")); err != nil {
		t.Fatal(err)
	}
	return kc, fb
}

func (fb *fakeBroker) next(t *testing.T) arrived {
	t.Helper()
	synctest.Wait()
	select {
	case a, ok := <-fb.packets:
		if !ok {
			t.Fatal("connection closed")
		}
		return a
	default:
		t.Fatal("no packet")
	}
	return arrived{}
}

func (fb *fakeBroker) none(t *testing.T) {
	t.Helper()
	synctest.Wait()
	select {
	case a, ok := <-fb.packets:
		if ok {
			t.Fatalf("unexpected %s", a.p)
		}
	default:
	}
}

func (fb *fakeBroker) pingresp(t *testing.T) {
	t.Helper()
	if _, err := fb.conn.Write([]byte{0xd0, 0x00}); err != nil {
		t.Fatal(err)
	}
}

// The timings, on the fake clock: a PINGREQ exactly one interval after the
// last packet either way, none while traffic flows, and the connection
// closed exactly at the ping timeout when the broker stays silent.
func TestKeepaliveConnTimings(t *testing.T) {
	const interval = time.Minute
	t.Run("CONNECT carries the interval", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, fb := newKeepalivePair(t, interval)
			if cp := fb.next(t).p.(*packets.ConnectPacket); cp.Keepalive != 60 || cp.ClientIdentifier != "pi-1" {
				t.Fatalf("CONNECT %s", cp)
			}
		})
	})
	t.Run("idle: one PINGREQ per interval, answered", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			kc, fb := newKeepalivePair(t, interval)
			start := fb.next(t).at
			go func() { _, _ = io.Copy(io.Discard, kc) }() // paho's reader
			for i := 1; i <= 3; i++ {
				time.Sleep(interval - time.Nanosecond)
				fb.none(t)
				time.Sleep(time.Nanosecond)
				a := fb.next(t)
				if _, ok := a.p.(*packets.PingreqPacket); !ok || a.at.Sub(start) != time.Duration(i)*interval {
					t.Fatalf("ping %d: %s at %s, want PINGREQ at %s", i, a.p, a.at.Sub(start), time.Duration(i)*interval)
				}
				fb.pingresp(t)
			}
		})
	})
	t.Run("traffic both ways: no PINGREQ", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			kc, fb := newKeepalivePair(t, interval)
			fb.next(t)
			go func() { _, _ = io.Copy(io.Discard, kc) }()
			for range 10 {
				time.Sleep(interval / 2)
				fb.pingresp(t) // any packet from the broker
				var b bytes.Buffer
				_ = packets.NewControlPacket(packets.Pingreq).Write(&b)
				if _, err := kc.Write(b.Bytes()); err != nil { // any packet from paho
					t.Fatal(err)
				}
				fb.next(t) // that packet, and no PINGREQ of ours
			}
			fb.none(t)
		})
	})
	t.Run("only sending: PINGREQ when nothing was received", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			kc, fb := newKeepalivePair(t, interval)
			start := fb.next(t).at
			go func() { _, _ = io.Copy(io.Discard, kc) }()
			time.Sleep(interval / 2)
			var b bytes.Buffer
			_ = packets.NewControlPacket(packets.Pingreq).Write(&b)
			_, _ = kc.Write(b.Bytes())
			fb.next(t)
			time.Sleep(interval / 2)
			if a := fb.next(t); a.at.Sub(start) != interval {
				t.Fatalf("second packet at %s, want at %s", a.at.Sub(start), interval)
			}
		})
	})
	t.Run("silent broker: closed at the timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			kc, fb := newKeepalivePair(t, interval)
			start := fb.next(t).at
			readErr := make(chan error, 1)
			go func() { _, err := io.Copy(io.Discard, kc); readErr <- err }()
			time.Sleep(interval)
			fb.next(t) // the PINGREQ, unanswered
			time.Sleep(pingTimeoutMax - time.Nanosecond)
			synctest.Wait()
			select {
			case err := <-readErr:
				t.Fatalf("closed 1 ns early: %v", err)
			default:
			}
			time.Sleep(time.Nanosecond)
			synctest.Wait()
			select {
			case err := <-readErr:
				if !errors.Is(err, errPingUnanswered) {
					t.Fatalf("read error %v, want %v", err, errPingUnanswered)
				}
				t.Logf("closed %s after the start: %v", time.Since(start), err)
			default:
				t.Fatal("not closed at the timeout")
			}
		})
	})
	t.Run("closed by paho: the timer stops", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			kc, fb := newKeepalivePair(t, interval)
			fb.next(t)
			_ = kc.Close()
			time.Sleep(10 * interval)
			synctest.Wait()
			if a, ok := <-fb.packets; ok {
				t.Fatalf("after Close: %s", a.p)
			}
		})
	})
}
