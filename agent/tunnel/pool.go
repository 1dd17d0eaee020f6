package tunnel

import (
	"math/bits"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/batchconn"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// freeList is a bounded pool of free buffers. Unlike sync.Pool, which keeps
// every buffer put back until two collections have passed (and collections
// are rare when little else allocates), it keeps at most cap(free): a burst
// of eight busy connections leaves at most that many 64 KiB frames resident
// afterwards, and the others become garbage at once.
type freeList[T any] struct {
	free chan T
	New  func() T
}

func newFreeList[T any](size int, alloc func() T) *freeList[T] {
	return &freeList[T]{free: make(chan T, size), New: alloc}
}

// Get returns a free buffer, or a new one.
func (p *freeList[T]) Get() T {
	select {
	case x := <-p.free:
		return x
	default:
		return p.New()
	}
}

// drain drops every free buffer.
func (p *freeList[T]) drain() { drainChan(p.free) }

// drainChan empties c without waiting.
func drainChan[T any](c chan T) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// Put keeps x for reuse if there is room, else drops it.
func (p *freeList[T]) Put(x T) {
	select {
	case p.free <- x:
	default:
	}
}

// maxFreeFrames is how many free frames are kept for reuse: what one link
// may have out (maxLinkFrames), about 0.75 MiB. More busy links allocate
// beyond it, and those frames are collected when they are done.
const maxFreeFrames = maxLinkFrames

// Queue chunks. A queue toward a local socket is a list of chunks: the
// first is the power of two that holds its bytes and doubles as more
// come, up to chunkSize; the next ones are chunkSize. The local writer
// frees each chunk as soon as the socket took it, so a connection holds
// about what is queued or being written, never more than its limit plus a
// chunk, and full chunks go round through a small free list shared by the
// process. Before, a queue was one buffer that doubled up to the limit,
// the writer wrote the whole buffer it took while another filled, and a
// free list kept every power of two up to 1 MiB: a single bulk connection
// kept 3-4 MiB of buffers alive (an allocation profile of the agent at its
// peak: 2.0 of its 3.4 MB of live heap), which the collector doubled.
const (
	chunkSize = 64 << 10
	// maxFreeChunks is how many free full chunks are kept for reuse:
	// 1 MiB, one default conn_buffer (4 chunks allocated 14 MB per op of
	// the pair benchmark, 8 chunks 10 MB). Beyond it, the chunks a burst
	// needed are collected when written.
	maxFreeChunks = DefaultConnBufferSize / chunkSize
)

var freeChunks = make(chan []byte, maxFreeChunks)

// chunkCap is the capacity of a new first chunk for n bytes: the power of
// two that holds them, at most chunkSize.
func chunkCap(n int) int {
	return min(1<<bits.Len(uint(max(n, 1)-1)), chunkSize)
}

// getChunk returns an empty chunk of capacity n (at most chunkSize).
func getChunk(n int) []byte {
	if n == chunkSize {
		select {
		case b := <-freeChunks:
			return b[:0]
		default:
		}
	}
	return make([]byte, 0, n)
}

// putChunk keeps b for reuse when it is a full-size chunk and the free
// list has room. The caller must not use b afterwards.
func putChunk(b []byte) {
	if cap(b) == chunkSize {
		select {
		case freeChunks <- b:
		default:
		}
	}
}

// wsWritePool lends gorilla/websocket a link's write buffer
// (Dialer.WriteBufferPool) for one message at a time: the link takes it
// when it begins a message and gives it back once the message is written,
// so an idle tunnel holds none. Before, each kept its own 128 KiB from its
// first message for as long as it was open. Two cover the writers of two
// busy links; more busy links at once allocate more, and those buffers
// are collected after their message. Get returns nil when none is free,
// and gorilla then allocates one.
var wsWritePool = newFreeList[any](2, func() any { return nil })

// readBufs lends the links' FrameReaders their 192 KiB buffer
// (protocol.NewLendingFrameReader) while they hold part of a large frame:
// an idle tunnel, or one that carries only small frames, holds none.
// Before, each held its own for as long as it was open. Two cover the
// readers of two busy links.
var readBufs = newFreeList(2, func() []byte { return make([]byte, protocol.ReadBufferSize) })

// releaseFreeBuffers drops the buffers kept for reuse (frames, queue
// chunks, the WebSocket's write and read buffers, batchconn's), so that
// the collector can return them (see Limits.ReleaseIdle).
func releaseFreeBuffers() {
	framePool.drain()
	wsWritePool.drain()
	readBufs.drain()
	drainChan(freeChunks)
	batchconn.ReleaseIdle()
}
