package tunnel

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestStats counts connections and bytes per service while a connection
// is open and after it ended, on both ends of a pair.
func TestStats(t *testing.T) {
	p := newPair(t, pairOpts{services: []string{"SSH", "HTTP"}})
	c, err := net.Dial("tcp", p.src.s.Addr("SSH").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	msg := make([]byte, 100_000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, msg); err != nil {
		t.Fatal(err)
	}
	get := func(r *running, svc string) ServiceStats {
		for _, s := range r.s.Stats() {
			if s.Service == svc {
				return s
			}
		}
		return ServiceStats{Service: svc}
	}
	// Live: the echo came back, so every byte crossed both ends.
	waitUntil(t, "destination counted the live connection", func() bool {
		d := get(p.dst, "SSH")
		return d.Active == 1 && d.Opened == 1 && d.BytesIn == 100_000 && d.BytesOut == 100_000
	})
	if s := get(p.src, "SSH"); s.Active != 1 || s.BytesOut != 100_000 || s.BytesIn != 100_000 {
		t.Fatalf("source stats while open: %+v", s)
	}
	if h := get(p.dst, "HTTP"); h != (ServiceStats{Service: "HTTP"}) {
		t.Fatalf("HTTP carried nothing, got %+v", h)
	}
	_ = c.Close()
	waitUntil(t, "connection ended and totals kept", func() bool {
		d := get(p.dst, "SSH")
		return d.Active == 0 && d.Opened == 1 && d.BytesIn == 100_000 && d.BytesOut == 100_000
	})
}
