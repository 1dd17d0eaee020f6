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
//
// The two directions end apart. The read direction is the goroutine that
// runs run (readLocal): it ends at the socket's EOF or error, or when the
// socket is closed under it. The write direction ends, once, with wdone:
// when it is aborted, when a drain has written what was queued, or when a
// write failed; whoever ends it closes the socket and then closes written.
// run waits for both, then calls finish: the socket is closed before
// finish, and finish runs once.
//
// The local writer (writeLocal) is a goroutine only while it has work.
// wantWriterLocked starts it (q.writing) once the socket is attached and
// bytes are queued (push could not write them directly, or they came while
// dialling) or a drain must end the write direction. It writes until the
// queue is empty and then ends: an idle connection runs only its reader.
// Attached and not over, queued chunks imply writing: push waiting for
// room always has a writer to take the queue.
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
	mu sync.Mutex
	// chunks hold the queued bytes in order; only the last one has room
	// (see pool.go). queued counts them; inflight counts the bytes of the
	// chunks the local writer took that the socket has not accepted yet.
	// The connection's limit bounds the two together.
	chunks   [][]byte
	queued   int
	inflight int
	iov, wv  net.Buffers // the local writer's, for one writev (writeChunks)
	limit    int
	conn     net.Conn
	state    connState // only setStateLocked changes it
	reason   string
	wake     chan struct{} // to the local writer: data or state change
	room     chan struct{} // closed by the local writer when the socket took some of what it holds
	took     time.Time     // when the socket last accepted a slice of the local writer's (see stallGate)
	began    time.Time     // when the local writer took the queue last (see limitLocked)
	// sending: the local reader holds data for the tunnel and waits for
	// the WebSocket. A local service that stops reading meanwhile (an echo,
	// any request/response protocol) waits for us, it is not stuck.
	sending atomic.Bool

	lim *Limits // the shared queue budget; the capacity of every chunk is reserved in it
	// peers counts the link's live connections (nil: no solo bound);
	// while it is 1, limit is at most solo (soloBufferSize of the mode).
	peers  *atomic.Int32
	solo   int
	raw    *rawTry       // nil: no direct writes (see push)
	busy   bool          // the local writer is writing
	direct bool          // push is writing directly
	count  *atomic.Int64 // bytes written to the local socket

	writing bool          // a local writer goroutine runs (see connState)
	wdone   bool          // the write direction is over
	werr    error         // the write that failed, if one did; set with wdone
	written chan struct{} // closed after wdone is set and the socket closed
}

// wantWriterLocked reports whether the caller must start a local writer
// (go writeLocal): the socket is attached, the write direction is not
// over, no writer runs, and there is work: bytes queued, or a drain or an
// abort to end the write direction with. It marks the writer running.
func (q *queue) wantWriterLocked() bool {
	if q.conn == nil || q.writing || q.wdone || (len(q.chunks) == 0 && !q.closing()) {
		return false
	}
	q.writing = true
	return true
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
		if rc, err := sc.SyscallConn(); err == nil {
			q.raw = newTryWriter(rc)
		}
	}
}

// push queues p for the local socket. When nothing is queued and the local
// writer is not writing, it first tries one non-blocking write to the
// socket, which saves starting a local writer; what the socket does not
// take is queued. When the queue is full it waits for the local writer to
// take it until the link's stall deadline (see stallGate), and so it does
// when the budget is short while its own writer holds a buffer; a slice
// the writer got out meanwhile restarts the wait. start reports
// that the caller must start a local writer for what was queued (see
// wantWriterLocked; localConn.push does).
func (q *queue) push(p []byte, gate *stallGate) (res pushResult, start bool) {
	q.mu.Lock()
	if q.raw != nil && len(q.chunks) == 0 && !q.busy && !q.closing() {
		q.direct = true
		q.mu.Unlock()
		n := q.raw.try(p)
		q.count.Add(int64(n))
		p = p[n:]
		q.mu.Lock()
		q.direct = false
		if len(p) == 0 {
			wake := q.writing // it may wait for this write to end
			q.mu.Unlock()
			if wake {
				q.signal()
			}
			return pushed, false
		}
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var since time.Time // when the current wait began
	soloWait := false   // the current wait is under the solo bound
	why := pushFull
	for !q.closing() {
		limit, solo := q.limitLocked(len(p))
		if pending := q.queued + q.inflight; pending+len(p) <= limit || pending == 0 {
			if q.appendLocked(p) {
				start = q.wantWriterLocked()
				q.mu.Unlock()
				q.signal() // a running writer may wait for a direct write to end
				return pushed, start
			}
			if !q.busy {
				q.mu.Unlock()
				return pushBudget, false
			}
			// The budget is short while this connection's own writer
			// holds chunks it took: they go back as the socket takes
			// them, so wait for that as for a full queue. A connection
			// with a conn_buffer as large as the budget (tunnelctl's) is
			// not reset for what its own writer holds.
			why = pushBudget
		}
		if timer == nil && solo {
			// Flow control, not a stall: no window of the gate opens.
			timer, since, soloWait = time.NewTimer(soloPatience), time.Now(), true
		}
		if timer == nil {
			soloWait = false
			now, took := time.Now(), q.took
			if q.sending.Load() || !q.busy {
				// Waiting for the WebSocket, or no write under way: its
				// writer has not run yet (a busy process), or is between
				// two writes. Not stuck (see stallGate).
				took = now
			}
			wait := gate.wait(now, took)
			if wait <= 0 {
				q.mu.Unlock()
				return why, false
			}
			timer, since = time.NewTimer(wait), now
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-timer.C:
			q.mu.Lock()
			if soloWait || q.took.After(since) {
				// Look again under the bound now (a solo wait), or: the
				// writer is still in one long write, but its socket took
				// a slice meanwhile: slow, not stuck. Wait anew.
				timer = nil
				continue
			}
			q.mu.Unlock()
			gate.expired.Add(1)
			return why, false
		}
		q.mu.Lock()
	}
	q.mu.Unlock()
	q.signal()
	return pushed, false
}

// writeSlice bounds one write of a local writer (one writev of chunks):
// after each one it notes that the local side moved (took) and frees the
// chunks written, so that a local reader slower than the tunnel, handed
// megabytes at once, is not taken for a stuck one while it still reads
// (see stallGate), and pushes find room as the socket takes the bytes.
const writeSlice = 256 << 10

// writeChunks writes chunks to c, about writeSlice bytes per system call.
// After each call it notes took if the socket accepted bytes, and frees
// the chunks written: their capacity goes back to the budget, their bytes
// leave inflight, and a push waiting for room is woken. After an error it
// frees the rest as well. Only the local writer calls it.
func (q *queue) writeChunks(c net.Conn, chunks [][]byte) (int, error) {
	total := 0
	for i := 0; i < len(chunks); {
		j, size := i+1, len(chunks[i])
		for j < len(chunks) && size+len(chunks[j]) <= writeSlice {
			size += len(chunks[j])
			j++
		}
		q.iov = append(q.iov[:0], chunks[i:j]...)
		q.wv = q.iov // WriteTo consumes its receiver; iov keeps the array
		n, err := q.wv.WriteTo(c)
		clear(q.iov)
		total += int(n)
		if err != nil {
			j = len(chunks)
		}
		q.mu.Lock()
		if n > 0 {
			q.took = time.Now()
		}
		for _, b := range chunks[i:j] {
			q.inflight -= len(b)
			q.freeChunk(b)
		}
		q.freeRoomLocked()
		q.mu.Unlock()
		if err != nil {
			return total, err
		}
		i = j
	}
	return total, nil
}

// limitLocked is the bound for queueing n more bytes now: limit, or solo
// while the connection is its link's only one (see SoloConnBufferSize),
// unless its local writer has been in a write for soloPatience
// with nothing accepted by the socket meanwhile; solo reports the solo
// bound. A client that stops reading (a suspended ssh, with up
// to its 2 MiB channel window in flight) thus gets the whole limit after
// soloPatience, as before, and the usual stall rules after that; and a
// push waiting for room is woken when a second connection opens
// (streamTable.unboundSoloLocked).
func (q *queue) limitLocked(n int) (limit int, solo bool) {
	if q.peers == nil || q.limit <= q.solo || q.queued+q.inflight+n <= q.solo || q.peers.Load() > 1 {
		return q.limit, false
	}
	if q.busy && time.Since(q.took) >= soloPatience && time.Since(q.began) >= soloPatience {
		return q.limit, false // in one write that long: the client does not read
	}
	return q.solo, true
}

// soloPatience is how long a push waits for room under the solo bound
// before it looks again, and how long the local writer may be in one write
// with nothing accepted before that bound stops applying (see
// limitLocked). A var for tests.
var soloPatience = 250 * time.Millisecond

// appendLocked adds p to the queue's chunks (see pool.go): it fills the
// last chunk, doubling it while it is smaller than chunkSize, then adds
// chunks; a queue's first chunk is the smallest power of two that holds
// its bytes, so a connection that queued a few bytes once (its first
// message arrived while it dialled) holds that few. The capacity of the
// chunks is what the shared budget counts: false when it has no room for
// what p needs.
func (q *queue) appendLocked(p []byte) bool {
	grow, tailCap := q.growthLocked(len(p))
	if grow > 0 && !q.lim.reserve(grow) {
		return false
	}
	if tailCap > 0 {
		last := len(q.chunks) - 1
		q.chunks[last] = append(getChunk(tailCap), q.chunks[last]...)
	}
	q.queued += len(p)
	for len(p) > 0 {
		if k := len(q.chunks); k > 0 {
			if t := q.chunks[k-1]; len(t) < cap(t) {
				n := min(len(p), cap(t)-len(t))
				q.chunks[k-1] = append(t, p[:n]...)
				p = p[n:]
				continue
			}
		}
		c := chunkSize
		if len(q.chunks) == 0 {
			c = chunkCap(len(p))
		}
		q.chunks = append(q.chunks, getChunk(c))
	}
	return true
}

// growthLocked is the capacity appendLocked adds for n bytes, and the new
// capacity of the last chunk if it grows (0: it does not).
func (q *queue) growthLocked(n int) (grow, tailCap int) {
	if k := len(q.chunks); k > 0 {
		t := q.chunks[k-1]
		room := cap(t) - len(t)
		if n > room && cap(t) < chunkSize {
			tailCap = chunkCap(max(len(t)+n, 2*cap(t)))
			grow = tailCap - cap(t)
			room = tailCap - len(t)
		}
		n -= room
	} else if n > 0 {
		grow = chunkCap(n)
		n -= grow
	}
	if n > 0 {
		grow += (n + chunkSize - 1) / chunkSize * chunkSize
	}
	return grow, tailCap
}

// dropLocked forgets what is queued and gives its chunks back to the
// budget. The chunks the local writer took are its own to free.
func (q *queue) dropLocked() {
	for _, b := range q.chunks {
		q.freeChunk(b)
	}
	clear(q.chunks)
	q.chunks = q.chunks[:0]
	q.queued = 0
}

// freeChunk gives b's capacity back to the budget and b to the free list.
func (q *queue) freeChunk(b []byte) {
	q.lim.release(cap(b))
	putChunk(b)
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
