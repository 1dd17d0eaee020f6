package batchconn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countConn counts the writes that reach the connection below.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func TestBatchWrites(t *testing.T) {
	tests := []struct {
		name       string
		batch      bool
		sizes      []int
		wantWrites int
	}{
		{"no batch: one write each", false, []int{10, 20, 30}, 3},
		{"batch: small writes leave together", true, []int{10, 20, 30}, 1},
		{"batch: nine TLS-record sized writes", true, []int{16 << 10, 16 << 10, 16 << 10, 16 << 10, 16 << 10, 16 << 10, 16 << 10, 16 << 10, 4}, 1},
		{"batch: overflow flushes early", true, []int{200 << 10, 100 << 10}, 2},
		{"batch: a write larger than the batch goes straight out", true, []int{10, batchSize + 1, 10}, 3},
		{"batch: empty", true, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			cc := &countConn{Conn: a}
			c := New(cc)
			defer c.Close()
			var want bytes.Buffer
			got := make(chan []byte, 1)
			total := 0
			for _, n := range tt.sizes {
				total += n
			}
			go func() {
				buf := make([]byte, total)
				_, _ = io.ReadFull(b, buf)
				got <- buf
			}()
			if tt.batch {
				c.StartBatch()
			}
			for i, n := range tt.sizes {
				p := bytes.Repeat([]byte{byte(i + 1)}, n)
				want.Write(p)
				if m, err := c.Write(p); err != nil || m != n {
					t.Fatalf("Write(%d bytes) = %d, %v", n, m, err)
				}
			}
			if tt.batch {
				if err := c.EndBatch(); err != nil {
					t.Fatalf("EndBatch: %v", err)
				}
			}
			if !bytes.Equal(<-got, want.Bytes()) {
				t.Fatal("the bytes that arrived differ from the bytes written, or their order")
			}
			if w := cc.count(); w != tt.wantWrites {
				t.Errorf("writes to the connection = %d, want %d", w, tt.wantWrites)
			}
		})
	}
}

// TestBatchHeldUntilEnd: nothing written in a batch reaches the peer
// before EndBatch.
func TestBatchHeldUntilEnd(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := New(a)
	defer c.Close()
	c.StartBatch()
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := b.Read(make([]byte, 8)); err == nil {
		t.Fatalf("read %d bytes before EndBatch", n)
	}
	_ = b.SetReadDeadline(time.Time{})
	done := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 4)
		_, _ = io.ReadFull(b, buf)
		done <- buf
	}()
	if err := c.EndBatch(); err != nil {
		t.Fatal(err)
	}
	if got := <-done; string(got) != "held" {
		t.Fatalf("got %q after EndBatch, want %q", got, "held")
	}
}

// TestFlushKeepsBatch: Flush sends what the batch holds (a close frame that
// joined it) and the batch goes on holding later writes until EndBatch.
func TestFlushKeepsBatch(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := New(a)
	defer c.Close()
	read := func(n int) chan []byte {
		done := make(chan []byte, 1)
		go func() {
			buf := make([]byte, n)
			_, _ = io.ReadFull(b, buf)
			done <- buf
		}()
		return done
	}
	c.StartBatch()
	if _, err := c.Write([]byte("close")); err != nil {
		t.Fatal(err)
	}
	done := read(5)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := <-done; string(got) != "close" {
		t.Fatalf("got %q after Flush, want %q", got, "close")
	}
	if _, err := c.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := b.Read(make([]byte, 8)); err == nil {
		t.Fatalf("read %d bytes of the batch after Flush, before EndBatch", n)
	}
	_ = b.SetReadDeadline(time.Time{})
	done = read(4)
	if err := c.EndBatch(); err != nil {
		t.Fatal(err)
	}
	if got := <-done; string(got) != "more" {
		t.Fatalf("got %q after EndBatch, want %q", got, "more")
	}
}

// TestBatchBufferShared: a connection holds a batch buffer only during a
// batch; the next batch, on this connection or another, reuses it, and
// ReleaseIdle drops the free ones.
func TestBatchBufferShared(t *testing.T) {
	ReleaseIdle()
	t.Cleanup(ReleaseIdle)
	batch := func(c *Conn, b net.Conn, msg string) {
		t.Helper()
		done := make(chan []byte, 1)
		go func() {
			buf := make([]byte, len(msg))
			_, _ = io.ReadFull(b, buf)
			done <- buf
		}()
		c.StartBatch()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if c.buf == nil {
			t.Fatal("no buffer during the batch")
		}
		if err := c.EndBatch(); err != nil {
			t.Fatal(err)
		}
		if got := <-done; string(got) != msg {
			t.Fatalf("peer read %q, want %q", got, msg)
		}
	}
	a1, b1 := net.Pipe()
	a2, b2 := net.Pipe()
	c1, c2 := New(a1), New(a2)
	defer func() {
		for _, c := range []net.Conn{c1, c2, b1, b2} {
			c.Close()
		}
	}()
	batch(c1, b1, "one")
	if c1.buf != nil || len(freeBufs) != 1 {
		t.Fatalf("after a batch: connection holds %d bytes of buffer, %d free; want none, 1", cap(c1.buf), len(freeBufs))
	}
	first := <-freeBufs
	freeBufs <- first
	batch(c2, b2, "two")
	if got := <-freeBufs; &got[:1][0] != &first[:1][0] {
		t.Error("the second connection's batch did not reuse the free buffer")
	}
	give(freeBufs, first[:0])
	ReleaseIdle()
	if len(freeBufs) != 0 {
		t.Errorf("%d free buffers after ReleaseIdle", len(freeBufs))
	}
}

// TestEndBatchError: a write error of the batch is reported by EndBatch.
func TestEndBatchError(t *testing.T) {
	a, b := net.Pipe()
	c := New(a)
	c.StartBatch()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	if err := c.EndBatch(); err == nil {
		t.Fatal("EndBatch after the peer closed: no error")
	}
	_ = c.Close()
}

// TestWebSocketOverTLS runs a WebSocket over TLS on loopback with Conns on
// both sides (Dial and Listener) and checks that Of finds them and that
// messages written in batches arrive whole, large and small, both ways.
func TestWebSocketOverTLS(t *testing.T) {
	cert := selfSigned(t)
	srv := httptest.NewUnstartedServer(nil)
	var serverOf *Conn
	var mu sync.Mutex
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		bc := Of(ws)
		mu.Lock()
		serverOf = bc
		mu.Unlock()
		for {
			typ, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			bc.StartBatch()
			err = ws.WriteMessage(typ, msg)
			err2 := ws.WriteMessage(typ, msg)
			if ferr := bc.EndBatch(); err == nil && err2 == nil {
				err = ferr
			}
			if err != nil {
				return
			}
		}
	})
	srv.Listener = Listener{Listener: srv.Listener}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()

	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	d := websocket.Dialer{NetDialContext: Dial(), TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
	ws, _, err := d.Dial("wss"+srv.URL[len("https"):], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	bc := Of(ws)
	if bc == nil {
		t.Fatal("Of(client WebSocket) = nil, want the dialled Conn")
	}
	var wd WriteDeadline
	wd.Refresh(ws, time.Minute)
	first := wd.at
	wd.Refresh(ws, time.Minute)
	if !wd.at.Equal(first) {
		t.Error("WriteDeadline moved with more than half of its span left")
	}
	wd.Refresh(ws, 3*time.Minute)
	if !wd.at.After(first) {
		t.Error("WriteDeadline did not move with less than half of its span left")
	}
	for _, n := range []int{1, 100, 16 << 10, 131076, 300 << 10} {
		msg := make([]byte, n)
		_, _ = rand.Read(msg)
		bc.StartBatch()
		err := ws.WriteMessage(websocket.BinaryMessage, msg)
		if ferr := bc.EndBatch(); err == nil {
			err = ferr
		}
		if err != nil {
			t.Fatalf("write %d bytes: %v", n, err)
		}
		for i := range 2 {
			_, got, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("read echo %d of %d bytes: %v", i, n, err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo %d of a %d-byte message differs", i, n)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if serverOf == nil {
		t.Fatal("Of(server WebSocket) = nil, want the accepted Conn")
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
