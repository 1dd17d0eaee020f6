package tunnel

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connState is where a local connection is in its life. q.mu guards it,
// and setStateLocked makes every transition:
//
//	dialling --attach (the dial succeeded)---------------> open
//	(a source's accepted client starts open)
//	dialling, open --drainClose (reset, or local EOF)----> draining: write what is queued, then close
//	dialling, open, draining --abort---------------------> aborted: drop what is queued, close now
//	any --finish (both directions done, link forgot it)--> finished
//
// aborted wins over draining: a drain after an abort stays aborted.
type connState uint8

const (
	connDialling connState = iota
	connOpen
	connDraining
	connAborted
	connFinished
)

// setStateLocked moves q to state to if that transition exists (see
// connState) and reports whether it did.
func (q *queue) setStateLocked(to connState) bool {
	ok := false
	switch to {
	case connOpen:
		ok = q.state == connDialling
	case connDraining:
		ok = q.state == connDialling || q.state == connOpen
	case connAborted:
		ok = q.state <= connDraining
	case connFinished:
		ok = true
	}
	if ok {
		q.state = to
	}
	return ok
}

// closing reports whether the connection is draining or over: no direct
// writes, no waiting for room, data from the tunnel is dropped.
func (q *queue) closing() bool { return q.state >= connDraining }

// ended reports whether the connection was aborted or has finished.
func (q *queue) ended() bool { return q.state >= connAborted }

// queue holds bytes from the tunnel for the local socket.
type queue struct {
	mu     sync.Mutex
	buf    []byte
	limit  int
	conn   net.Conn
	state  connState // only setStateLocked changes it
	reason string
	wake   chan struct{} // to the local writer: data or state change
	room   chan struct{} // closed by the local writer when it took the queue
	took   time.Time     // when the local writer last took the queue (see stallGate)
	// sending: the local reader holds data for the tunnel and waits for
	// the WebSocket. A local service that stops reading meanwhile (an echo,
	// any request/response protocol) waits for us, it is not stuck.
	sending atomic.Bool

	lim    *Limits         // the shared queue budget; len(buf) is reserved in it
	raw    syscall.RawConn // nil: no direct writes (see push)
	busy   bool            // the local writer is writing
	direct bool            // push is writing directly
	count  *atomic.Int64   // bytes written to the local socket
}

// pushResult says what push did with the data.
type pushResult int

const (
	pushed     pushResult = iota
	pushFull              // the queue stayed full until the stall deadline
	pushBudget            // the agent-wide queue budget has no room
)

// setConn sets the local connection and, when it is a socket, the raw
// connection push uses for direct writes.
func (q *queue) setConn(c net.Conn) {
	q.conn = c
	if sc, ok := c.(syscall.Conn); ok && canTryWrite {
		q.raw, _ = sc.SyscallConn()
	}
}

// push queues p for the local socket. When nothing is queued and the local
// writer is idle, it first tries one non-blocking write to the socket, which
// saves waking the local writer; what the socket does not take is queued.
// When the queue is full it waits for the local writer to take it until the
// link's stall deadline (see stallGate).
func (q *queue) push(p []byte, gate *stallGate) pushResult {
	q.mu.Lock()
	if q.raw != nil && len(q.buf) == 0 && !q.busy && !q.closing() {
		q.direct = true
		q.mu.Unlock()
		n := tryWrite(q.raw, p)
		q.count.Add(int64(n))
		p = p[n:]
		q.mu.Lock()
		q.direct = false
		if len(p) == 0 {
			wake := q.closing()
			q.mu.Unlock()
			if wake {
				q.signal()
			}
			return pushed
		}
	}
	var timer *time.Timer
	for len(q.buf)+len(p) > q.limit && !q.closing() {
		if timer == nil {
			now, took := time.Now(), q.took
			if q.sending.Load() {
				took = now
			}
			wait := gate.wait(now, took)
			if wait <= 0 {
				q.mu.Unlock()
				return pushFull
			}
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-timer.C:
			gate.expired.Add(1)
			return pushFull
		}
		q.mu.Lock()
	}
	if q.closing() {
		q.mu.Unlock()
		q.signal()
		return pushed
	}
	if !q.appendLocked(p) {
		q.mu.Unlock()
		return pushBudget
	}
	q.mu.Unlock()
	q.signal()
	return pushed
}

// appendLocked adds p to buf, growing it to at most limit bytes of capacity
// (append's doubling would reach twice that). The capacity of the queue's
// buffers is what the shared budget counts: false when it has no room for
// the growth. Capacities are powers of two (the sizes pool.go reuses), and
// the first buffer is the smallest that holds its bytes: the local writer
// keeps it for its next write, and a connection that queued a few bytes
// once (its first message arrived while it dialled) then keeps that few.
func (q *queue) appendLocked(p []byte) bool {
	need := len(q.buf) + len(p)
	if need > cap(q.buf) {
		n := min(queueBufSize(max(need, 2*cap(q.buf))), max(q.limit, need))
		if !q.lim.reserve(n - cap(q.buf)) {
			return false
		}
		nb := append(getQueueBuf(n), q.buf...)
		putQueueBuf(q.buf)
		q.buf = nb
	}
	q.buf = append(q.buf, p...)
	return true
}

// dropLocked forgets what is queued and gives its buffer back to the budget.
func (q *queue) dropLocked() {
	q.lim.release(cap(q.buf))
	putQueueBuf(q.buf)
	q.buf = nil
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// freeRoomLocked wakes a push waiting for room.
func (q *queue) freeRoomLocked() {
	if q.room != nil {
		close(q.room)
		q.room = nil
	}
}
