//go:build unix

package tunnel

import "syscall"

const canTryWrite = true

// tryWrite makes one non-blocking write attempt on a socket and returns how
// many bytes it took (0 when the socket buffer is full or on an error,
// which the local writer then meets on its own write).
func tryWrite(rc syscall.RawConn, p []byte) int { return tryOnce(rc.Write, syscall.Write, p) }

// tryRead makes one non-blocking read attempt on a socket and returns how
// many bytes it got: 0 when nothing is waiting, at EOF or on an error, which
// the next blocking Read then reports.
func tryRead(rc syscall.RawConn, p []byte) int { return tryOnce(rc.Read, syscall.Read, p) }

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

// tryOnce runs op once on the socket's descriptor through the RawConn's
// Read or Write (do), never waiting for the socket to become ready.
func tryOnce(do func(func(uintptr) bool) error, op func(int, []byte) (int, error), p []byte) int {
	var n int
	err := do(func(fd uintptr) bool {
		for {
			m, err := op(int(fd), p)
			if err == syscall.EINTR {
				continue
			}
			if err == nil && m > 0 {
				n = m
			}
			return true
		}
	})
	if err != nil {
		return 0
	}
	return n
}
