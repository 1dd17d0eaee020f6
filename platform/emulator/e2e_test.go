package emulator_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// TestEndToEnd runs the whole AWS side locally: OpenTunnel over HTTP, the
// notification through the embedded broker to a paho device over mutual
// TLS, and real tunnel.Session source and destination over TLS WebSockets
// carrying several TCP connections, data checked in both directions.
func TestEndToEnd(t *testing.T) {
	e, stop := runEmulator(t, emulator.Config{StateDir: t.TempDir()})
	defer stop()

	notes := subscribeDevice(t, e, "pi-e2e")
	open := apiCall(t, e, "OpenTunnel", `{"destinationConfig":{"thingName":"pi-e2e","services":["SSH"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":5}}`)
	var note struct{ ClientAccessToken, ClientMode, Region string }
	select {
	case b := <-notes:
		if err := json.Unmarshal(b, &note); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
	if note.ClientAccessToken != open["destinationAccessToken"] || note.ClientMode != "destination" || note.Region != "us-east-1" {
		t.Fatalf("notification %+v does not match OpenTunnel", note)
	}

	echo := hashServer(t)
	defer echo.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dst := newSession(t, e, tunnel.ModeDestination, note.ClientAccessToken, map[string]string{"SSH": echo.Addr().String()})
	src := newSession(t, e, tunnel.ModeSource, open["sourceAccessToken"].(string), map[string]string{"SSH": "127.0.0.1:0"})
	runs := make(chan error, 2)
	go func() { runs <- dst.Run(ctx) }()
	// As with AWS, frames sent while the other side is not connected are
	// lost, so the device connects first (as it would on the notification).
	waitState(t, e, open["tunnelId"].(string), "destinationConnectionState", "CONNECTED")
	go func() { runs <- src.Run(ctx) }()
	waitState(t, e, open["tunnelId"].(string), "sourceConnectionState", "CONNECTED")

	// One connection first: it opens the stream (STREAM_START); the
	// concurrent ones then travel as V3 CONNECTION_STARTs. (Starting all at
	// once makes the source session send CONNECTION_START before
	// STREAM_START, reported to the agent/tunnel owner.)
	transfer(t, src.Addr("SSH").String(), 64<<10)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			transfer(t, src.Addr("SSH").String(), (i+1)<<20)
		}()
	}
	wg.Wait()

	apiCall(t, e, "CloseTunnel", `{"tunnelId":"`+open["tunnelId"].(string)+`"}`)
	for range 2 {
		select {
		case err := <-runs:
			if err != nil {
				t.Errorf("session Run after CloseTunnel: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("sessions did not end after CloseTunnel")
		}
	}
}

func waitState(t *testing.T, e *emulator.Emulator, id, key, want string) {
	t.Helper()
	if !tunneltest.Poll(10*time.Second, func() bool {
		tun := apiCall(t, e, "DescribeTunnel", `{"tunnelId":"`+id+`"}`)["tunnel"].(map[string]any)
		return tun[key].(map[string]any)["status"] == want
	}) {
		t.Fatalf("%s never became %s", key, want)
	}
}

func runEmulator(t *testing.T, cfg emulator.Config) (*emulator.Emulator, func()) {
	t.Helper()
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	return e, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("emulator Run: %v", err)
		}
	}
}

func subscribeDevice(t *testing.T, e *emulator.Emulator, thing string) <-chan []byte {
	t.Helper()
	certFile, keyFile, err := e.IssueDeviceCert(thing, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan []byte, 4)
	opts := paho.NewClientOptions().AddBroker("ssl://" + e.MQTTAddr()).SetClientID(thing).
		SetTLSConfig(&tls.Config{RootCAs: e.CAPool(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}).
		SetAutoReconnect(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	topic := "$aws/things/" + thing + "/tunnels/notify"
	if tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { msgs <- m.Payload() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return msgs
}

func apiCall(t *testing.T, e *emulator.Emulator, op, body string) map[string]any {
	t.Helper()
	var out map[string]any
	if err := emulator.CallAPI(context.Background(), http.DefaultClient, e.APIURL(), emulator.DefaultRegion, op, json.RawMessage(body), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func newSession(t *testing.T, e *emulator.Emulator, mode tunnel.Mode, token string, services map[string]string) *tunnel.Session {
	t.Helper()
	s, err := tunnel.New(tunnel.Config{Mode: mode, Endpoint: e.DataEndpoint(), AccessToken: token,
		RootCAs: e.CAPool(), Services: services, ReconnectMin: 50 * time.Millisecond, ReconnectMax: time.Second,
		// The emulator relays at loopback speed (no 800 KB/s cap as in AWS),
		// so give the per-connection buffers room for the whole transfer.
		ConnBufferSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hashServer is the destination service. A client sends 'u' + 8-byte
// length + data and gets the data's SHA-256 back; or 'd' + 8-byte length and
// gets that many bytes of a deterministic stream followed by EOF. Unlike an
// echo server it does not feed the tunnel's output back into its input.
func hashServer(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveHash(c)
		}
	}()
	return ln
}

func serveHash(c net.Conn) {
	defer c.Close()
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint64(hdr[1:]))
	if hdr[0] == 'd' {
		_, _ = io.Copy(c, io.LimitReader(pattern(n), n))
		return
	}
	h := sha256.New()
	if _, err := io.CopyN(h, c, n); err == nil {
		_, _ = c.Write(h.Sum(nil))
	}
}

// pattern is a deterministic byte stream seeded by n.
func pattern(n int64) io.Reader {
	var seed [32]byte
	binary.BigEndian.PutUint64(seed[:], uint64(n))
	return mrand.NewChaCha8(seed)
}

// transfer sends n random bytes through the tunnel and checks their hash,
// then downloads n bytes and checks them.
func transfer(t *testing.T, addr string, n int) {
	for _, op := range []byte{'u', 'd'} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		hdr := append([]byte{op}, binary.BigEndian.AppendUint64(nil, uint64(n))...)
		if _, err := c.Write(hdr); err != nil {
			t.Error(err)
		}
		if op == 'u' {
			data := make([]byte, n)
			_, _ = rand.Read(data)
			want := sha256.Sum256(data)
			go func() { _, _ = c.Write(data) }()
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want[:]) {
				t.Errorf("upload of %d bytes: hash mismatch or error %v", n, err)
			}
		} else {
			got, err := io.ReadAll(c)
			want, _ := io.ReadAll(io.LimitReader(pattern(int64(n)), int64(n)))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("download of %d bytes: got %d bytes, corrupted or error %v", n, len(got), err)
			}
		}
		c.Close()
	}
}
