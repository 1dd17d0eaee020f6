package tunnel

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
