//go:build unix

package tunnel

import "syscall"

const canTryWrite = true

// rawTry makes non-blocking attempts on a socket, one direction: it
// reads or writes once and returns how many bytes moved, 0 when the
// socket was not ready, at EOF or on an error (which the next blocking
// call then reports). The func handed to the RawConn is made once, so an
// attempt allocates nothing; a closure per attempt cost two allocations
// for every DATA frame written straight to a local socket. Not safe for
// concurrent use: a queue's direct writes and a local reader each have
// their own.
type rawTry struct {
	do func(func(uintptr) bool) error // the RawConn's Read or Write
	op func(int, []byte) (int, error) // syscall.Read or syscall.Write
	fn func(uintptr) bool             // attempt, bound once
	p  []byte
	n  int
}

func newTryWriter(rc syscall.RawConn) *rawTry { return newRawTry(rc.Write, syscall.Write) }

func newTryReader(rc syscall.RawConn) *rawTry { return newRawTry(rc.Read, syscall.Read) }

func newRawTry(do func(func(uintptr) bool) error, op func(int, []byte) (int, error)) *rawTry {
	t := &rawTry{do: do, op: op}
	t.fn = t.attempt
	return t
}

// try makes one attempt with p, never waiting for the socket to become
// ready.
func (t *rawTry) try(p []byte) int {
	t.p, t.n = p, 0
	err := t.do(t.fn)
	n := t.n
	t.p = nil
	if err != nil {
		return 0
	}
	return n
}

func (t *rawTry) attempt(fd uintptr) bool {
	for {
		m, err := t.op(int(fd), t.p)
		if err == syscall.EINTR {
			continue
		}
		if err == nil && m > 0 {
			t.n = m
		}
		return true
	}
}

// readableWaiter returns a function that waits until the socket has data
// to read, is at EOF or failed, without a buffer: an idle connection then
// holds no frame while it waits (see readLocal). The next Read reports
// what it found. The function allocates nothing per call.
func readableWaiter(rc syscall.RawConn) func() {
	var probe [1]byte
	woken := false
	f := func(fd uintptr) bool {
		if woken { // the poller saw the socket become readable (or fail)
			return true
		}
		woken = true
		for {
			// MSG_PEEK leaves the byte to the Read that follows; the
			// descriptor is non-blocking, so nothing waiting is EAGAIN.
			_, _, err := syscall.Recvfrom(int(fd), probe[:], syscall.MSG_PEEK)
			if err == syscall.EINTR {
				continue
			}
			return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
		}
	}
	return func() {
		woken = false
		_ = rc.Read(f) // a closed socket or a lapsed deadline: Read reports it
	}
}
