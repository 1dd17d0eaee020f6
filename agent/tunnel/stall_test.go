package tunnel

import (
	"bytes"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestPushAfterAnotherStall: a queue found full in the cool-down after
// another connection's stall window is not reset when its local side
// moved since the window opened; one that is stuck is. Before, every
// queue found full in the cool-down was reset at once: in
// TestIntegrationV3 (about 1 run in 8), the 8 MiB echo connection, whose
// STREAM_START the reader reached only after the never-reading service's
// window, filled its queue while still dialling and was reset at once.
func TestPushAfterAnotherStall(t *testing.T) {
	tests := []struct {
		name    string
		moving  bool // the local writer took the queue (or the connection started) after the window opened
		sending bool // the local reader waits for the WebSocket
		want    pushResult
	}{
		{"draining or new connection waits for room", true, false, pushed},
		{"service waiting for its replies to leave waits for room", false, true, pushed},
		{"stuck queue is reset at once", false, false, pushFull},
		{"queue whose writer is not in a write yet waits for room", false, false, pushed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const limit = 64 << 10
				g := stallGate{stall: time.Second}
				now := time.Now()
				g.until = now.Add(-100 * time.Millisecond) // another queue's window just closed
				q := &queue{limit: limit, lim: NewLimits(0, 0, 0), wake: make(chan struct{}, 1),
					chunks: [][]byte{bytes.Repeat([]byte("x"), limit)}, queued: limit}
				q.took = now.Add(-2 * time.Second) // before the window opened
				if tt.moving {
					q.took = now.Add(-50 * time.Millisecond)
				}
				q.sending.Store(tt.sending)
				// The local writer is in a write (blocked on the socket),
				// except in the case of a writer not scheduled yet: push
				// wrote to the socket directly until now and queued what
				// it no longer took, and its writer has not run.
				q.busy = !strings.Contains(tt.name, "not in a write")
				res := make(chan pushResult, 1)
				go func() { r, _ := q.push([]byte("more"), &g); res <- r }()
				synctest.Wait()
				// The local writer takes the queue and the socket takes
				// it, as a draining one does.
				q.mu.Lock()
				q.chunks, q.queued = nil, 0
				q.took = time.Now()
				q.freeRoomLocked()
				q.mu.Unlock()
				if got := <-res; got != tt.want {
					t.Errorf("push = %v, want %v", got, tt.want)
				}
			})
		})
	}
}
