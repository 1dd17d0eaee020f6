package tunnel

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// sinkServer reads n bytes per connection (n sent first as 8 bytes) and
// answers with one byte.
func sinkServer(t testing.TB) string {
	return tunneltest.Serve(t, func(c net.Conn) {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int64(0)
		for _, b := range hdr {
			n = n<<8 | int64(b)
		}
		if _, err := io.CopyN(io.Discard, c, n); err != nil {
			return
		}
		_, _ = c.Write([]byte{1})
	})
}

// push sends n bytes to a sink at addr and waits for its answer.
func push(tb testing.TB, addr string, n int64, buf []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	var hdr [8]byte
	for i := range hdr {
		hdr[i] = byte(n >> (56 - 8*i))
	}
	if _, err := c.Write(hdr[:]); err != nil {
		tb.Fatal(err)
	}
	for left := n; left > 0; {
		m := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:m]); err != nil {
			tb.Fatal(err)
		}
		left -= m
	}
	if _, err := io.ReadFull(c, hdr[:1]); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkSessionPair measures one-way throughput through source ->
// TLS relay -> destination and reports it as a fraction of a direct
// loopback TCP transfer measured in the same run ("tcp-ratio").
func BenchmarkSessionPair(b *testing.B) {
	const perOp = 32 << 20
	sink := sinkServer(b)
	buf := make([]byte, 64<<10)
	tcpRate := directRate(b, sink, perOp, buf)

	p := newPair(b, pairOpts{dstExtra: map[string]string{"SINK": sink}, noSplit: true})
	addr := p.src.s.Addr("SINK").String()
	push(b, addr, 1<<20, buf) // warm up
	b.SetBytes(perOp)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		push(b, addr, perOp, buf)
	}
	rate := float64(b.N) * perOp / time.Since(start).Seconds()
	b.StopTimer()
	tcpRate = (tcpRate + directRate(b, sink, perOp, buf)) / 2 // before and after: the load varies
	b.ReportMetric(rate/tcpRate, "tcp-ratio")
	b.ReportMetric(tcpRate/1e6, "tcp-MB/s")
}

// directRate is the bytes per second of direct loopback TCP pushes to sink.
func directRate(b *testing.B, sink string, perOp int64, buf []byte) float64 {
	start := time.Now()
	for range 8 {
		push(b, sink, perOp, buf)
	}
	return 8 * float64(perOp) / time.Since(start).Seconds()
}

// BenchmarkEcho100MiB sends 100 MiB each way through an echo service and
// compares SHA-256.
func BenchmarkEcho100MiB(b *testing.B) {
	p := newPair(b, pairOpts{services: []string{"ECHO"}, noSplit: true})
	addr := p.src.s.Addr("ECHO").String()
	b.SetBytes(100 << 20)
	for b.Loop() {
		if err := transfer(addr, 100<<20, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTrip64 sends 64-byte messages one at a time through an
// echo service over source -> TLS relay -> destination (all in this
// process): the user-space work of a small round trip, for profiles.
func BenchmarkRoundTrip64(b *testing.B) {
	p := newPair(b, pairOpts{services: []string{"ECHO"}, noSplit: true})
	c, err := net.Dial("tcp", p.src.s.Addr("ECHO").String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, back := make([]byte, 64), make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			b.Fatal(err)
		}
	}
}
