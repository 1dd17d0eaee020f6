package tunnel

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// pairOpts describes a source and a destination session joined by a TLS
// test relay that re-chunks WebSocket messages at random boundaries.
type pairOpts struct {
	services   []string
	clientType string // source's DestinationClientType
	srcSub     string // subprotocol the relay picks for the source ("" = highest)
	dstSub     string
	dstExtra   map[string]string // extra destination services
	tweak      func(src, dst *Config)
	noSplit    bool // forward WebSocket messages whole
}

type pair struct {
	src, dst *running
	relay    *relay
}

func newPair(t testing.TB, o pairOpts) *pair {
	t.Helper()
	all := append([]string(nil), o.services...)
	for s := range o.dstExtra {
		all = append(all, s)
	}
	r := newRelay(t, true, all...)
	r.split = !o.noSplit
	if o.srcSub != "" {
		r.setSubprotocol("source", o.srcSub)
	}
	if o.dstSub != "" {
		r.setSubprotocol("destination", o.dstSub)
	}
	dstMap, srcMap := map[string]string{}, map[string]string{}
	for _, s := range o.services {
		dstMap[s] = tunneltest.Echo(t)
		srcMap[s] = "127.0.0.1:0"
	}
	for s, addr := range o.dstExtra {
		dstMap[s] = addr
		srcMap[s] = "127.0.0.1:0"
	}
	dcfg := testConfig(r, ModeDestination, dstMap)
	scfg := testConfig(r, ModeSource, srcMap)
	scfg.DestinationClientType = o.clientType
	if o.tweak != nil {
		o.tweak(&scfg, &dcfg)
	}
	p := &pair{relay: r, dst: start(t, dcfg)}
	p.dst.ev.wait(t, "destination connected", isKind(EventConnected))
	waitUntil(t, "relay has the destination", func() bool { return r.connected("destination") })
	p.src = start(t, scfg)
	waitUntil(t, "source ready", func() bool { return p.src.s.waitLink(t.Context(), 0) != nil })
	return p
}

// transfer sends n pseudo-random bytes through an echo service and checks
// the SHA-256 of what comes back.
func transfer(addr string, n int64, seed uint64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	// A transfer fails when it stops moving, not when it is slow: under qemu
	// on a loaded machine the whole run can take minutes.
	c = progressConn{c}
	sent, got := sha256.New(), sha256.New()
	var werr error
	var wg sync.WaitGroup
	wg.Go(func() {
		src := io.TeeReader(io.LimitReader(rand.NewChaCha8(seedBytes(seed)), n), sent)
		_, werr = io.CopyBuffer(c, src, make([]byte, 48<<10))
	})
	m, rerr := io.CopyN(got, c, n)
	wg.Wait()
	if werr != nil || rerr != nil {
		return fmt.Errorf("write: %v, read %d/%d bytes: %v", werr, m, n, rerr)
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return errors.New("SHA-256 of the echoed bytes differs from what was sent")
	}
	return nil
}

// progressConn gives each Read and Write its own deadline, so a connection
// fails after progressIdle without progress however long it runs.
type progressConn struct{ net.Conn }

const progressIdle = 2 * time.Minute

func (c progressConn) Read(p []byte) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(progressIdle))
	return c.Conn.Read(p)
}

func (c progressConn) Write(p []byte) (int, error) {
	_ = c.SetWriteDeadline(time.Now().Add(progressIdle))
	return c.Conn.Write(p)
}

func seedBytes(s uint64) [32]byte {
	var b [32]byte
	for i := range 8 {
		b[i] = byte(s >> (8 * i))
	}
	return b
}

// TestIntegrationV3 runs 3 services x 20 concurrent connections, a large
// transfer, and a local service that never reads, through source ->
// relay -> destination over loopback TLS.
func TestIntegrationV3(t *testing.T) {
	release := make(chan struct{})
	slow := tunneltest.Serve(t, func(c net.Conn) { <-release })
	defer close(release)
	p := newPair(t, pairOpts{services: []string{"SSH", "HTTP", "DB"}, dstExtra: map[string]string{"SLOW": slow},
		tweak: func(_, dst *Config) { dst.ConnBufferSize = 256 << 10 }})

	// The slow service: its client writes until the tunnel resets it.
	slowErr := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", p.src.s.Addr("SLOW").String())
		if err != nil {
			slowErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		buf := make([]byte, 64<<10)
		for range 1024 { // at most 64 MiB
			if _, err := c.Write(buf); err != nil {
				slowErr <- err
				return
			}
		}
		slowErr <- nil
	}()

	large := int64(8 << 20)
	if os.Getenv("TUNNEL_LARGE") != "" {
		large = 100 << 20
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for _, svc := range []string{"SSH", "HTTP", "DB"} {
		addr := p.src.s.Addr(svc).String()
		for i := range 20 {
			n := int64(256 << 10)
			if svc == "SSH" && i == 0 {
				n = large
			}
			wg.Go(func() {
				if err := transfer(addr, n, uint64(i)); err != nil {
					errs <- fmt.Errorf("%s #%d (%d bytes): %w", svc, i, n, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// All of that finished while the slow service had not read a byte.
	if err := <-slowErr; err == nil {
		t.Fatal("the never-reading service was not reset after 64 MiB")
	}
	p.dst.ev.wait(t, "slow connection reset", func(e Event) bool {
		return e.Kind == EventStreamClosed && e.Service == "SLOW" && e.Reason == "local socket too slow: buffer full"
	})
	if n := p.dst.ev.count(EventDisconnected) + p.src.ev.count(EventDisconnected); n != 0 {
		t.Fatalf("%d WebSocket disconnects during the test", n)
	}
	assertNoSecrets(t, p.src.ev.logText()+p.dst.ev.logText(), srcToken, dstToken, p.src.s.ClientToken(), p.dst.s.ClientToken())
}

// TestIntegrationVersions covers the version combinations of PROTOCOL.md
// §6.10 with our source and destination on both ends.
func TestIntegrationVersions(t *testing.T) {
	tests := []struct {
		name string
		opts pairOpts
	}{
		{"source V2", pairOpts{services: []string{"SSH", "HTTP"}, clientType: "V2"}},
		{"source V1", pairOpts{services: []string{"SSH"}, clientType: "V1"}},
		{"auto, destination on 2.0", pairOpts{services: []string{"SSH", "HTTP"}, dstSub: protocol.SubprotocolV2}},
		{"auto, destination on 1.0", pairOpts{services: []string{"SSH"}, dstSub: protocol.SubprotocolV1}},
		{"auto, source on 1.0", pairOpts{services: []string{"SSH"}, srcSub: protocol.SubprotocolV1}},
		{"V3, both on 2.0", pairOpts{services: []string{"SSH", "HTTP", "DB"}, clientType: "V3", srcSub: protocol.SubprotocolV2, dstSub: protocol.SubprotocolV2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, tt.opts)
			// One transfer first: an automatic source learns from the first
			// DATA that the destination is V2; clients opened at the same
			// time as the first one may be reset while it learns.
			if err := transfer(p.src.s.Addr(tt.opts.services[0]).String(), 1024, 9); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for _, svc := range tt.opts.services {
				addr := p.src.s.Addr(svc).String()
				for i := range 3 { // V1/V2: one connection at a time, the others wait
					wg.Go(func() {
						if err := transfer(addr, 128<<10, uint64(i)); err != nil {
							errs <- fmt.Errorf("%s #%d: %w", svc, i, err)
						}
					})
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}
