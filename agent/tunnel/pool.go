package tunnel

import "math/bits"

// freeList is a bounded pool of free buffers. Unlike sync.Pool, which keeps
// every buffer put back until two collections have passed (and collections
// are rare when little else allocates), it keeps at most cap(free): a burst
// of eight busy connections leaves at most that many 64 KiB frames resident
// afterwards, and the others become garbage at once.
type freeList struct {
	free chan any
	New  func() any
}

func newFreeList(size int, alloc func() any) *freeList {
	return &freeList{free: make(chan any, size), New: alloc}
}

// Get returns a free buffer, or a new one.
func (p *freeList) Get() any {
	select {
	case x := <-p.free:
		return x
	default:
		return p.New()
	}
}

// Put keeps x for reuse if there is room, else drops it.
func (p *freeList) Put(x any) {
	select {
	case p.free <- x:
	default:
	}
}

// maxFreeFrames is how many free frames are kept for reuse: what one link
// has in flight when its queue is full and a local reader holds a read
// batch (outQueue + maxReadBatch), about 0.75 MiB. More busy connections
// allocate beyond it, and those frames are collected when they are done.
const maxFreeFrames = outQueue + maxReadBatch

// Queue buffers. A queue toward a local socket starts at the power of two
// that holds its first bytes and grows by doubling when the socket does not
// keep up (capacities are powers of two), and its writer lets a
// buffer larger than keepSpare go after writing it. Without reuse every
// such burst was garbage (87% of the bytes allocated in a bulk transfer
// through the pair benchmark), and garbage is what grows the heap between
// collections. Free buffers of each power-of-two capacity from
// minQueueBuf to maxPooledQueueBuf are kept, a few per size: 2.2 MiB at
// most, shared by the process (the pair benchmark allocates 2.5 instead
// of 9.1 MB per 32 MiB moved).
const (
	minQueueBuf       = 32 << 10
	maxPooledQueueBuf = 1 << 20
)

// queueBufs holds the free lists, by log2(capacity / minQueueBuf).
var queueBufs = [...]chan []byte{
	make(chan []byte, 2), // 32 KiB
	make(chan []byte, 2), // 64 KiB
	make(chan []byte, 2), // 128 KiB
	make(chan []byte, 1), // 256 KiB
	make(chan []byte, 1), // 512 KiB
	make(chan []byte, 1), // 1 MiB, the default conn_buffer
}

// queueBufSize rounds n up to a power of two, so that a queue's buffers
// come in the sizes queueBufs keep.
func queueBufSize(n int) int {
	return 1 << bits.Len(uint(n-1))
}

// queueBufClass is the free list for buffers of capacity n, or -1 when n
// is not a pooled size.
func queueBufClass(n int) int {
	if n < minQueueBuf || n > maxPooledQueueBuf || n&(n-1) != 0 {
		return -1
	}
	c := 0
	for m := minQueueBuf; m < n; m <<= 1 {
		c++
	}
	return c
}

// getQueueBuf returns an empty buffer of capacity n.
func getQueueBuf(n int) []byte {
	if c := queueBufClass(n); c >= 0 {
		select {
		case b := <-queueBufs[c]:
			return b[:0]
		default:
		}
	}
	return make([]byte, 0, n)
}

// putQueueBuf keeps b for reuse when its size is pooled and its list has
// room. The caller must not use b afterwards.
func putQueueBuf(b []byte) {
	if c := queueBufClass(cap(b)); c >= 0 {
		select {
		case queueBufs[c] <- b:
		default:
		}
	}
}
