package tunnel

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// TestQuietConnectionDoesNotHoldTheLinksFrames leaves the destination's
// link one frame of its budget (maxLinkFrames), lets a service write one
// full frame and go quiet, and checks that another connection on the
// link still gets its echo: a reader that read full frames must not wait
// for its quiet socket holding a frame of the budget.
func TestQuietConnectionDoesNotHoldTheLinksFrames(t *testing.T) {
	quiet := tunneltest.Serve(t, func(c net.Conn) {
		if _, err := c.Write(make([]byte, protocol.MaxPayload)); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // quiet until the client closes
	})
	p := newPair(t, pairOpts{services: []string{"ECHO"}, dstExtra: map[string]string{"QUIET": quiet}, noSplit: true})
	l := p.dst.s.waitLink(t.Context(), 10*time.Second)
	if l == nil {
		t.Fatal("the destination has no link")
	}
	for range maxLinkFrames - 1 { // taken by frames elsewhere on the link
		l.w.budget <- struct{}{}
	}
	defer drainChan(l.w.budget)

	c, err := net.Dial("tcp", p.src.s.Addr("QUIET").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, protocol.MaxPayload)); err != nil {
		t.Fatalf("reading the quiet service's frame: %v", err)
	}
	if err := tunneltest.EchoCheck(p.src.s.Addr("ECHO").String(), 200<<10); err != nil {
		t.Fatalf("echo with a quiet connection holding the link's last frame: %v", err)
	}
}
