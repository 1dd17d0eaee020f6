//go:build unix

package tunnel

import "syscall"

const canTryWrite = true

// tryWrite makes one non-blocking write attempt on a socket and returns how
// many bytes it took (0 when the socket buffer is full or on an error,
// which the local writer then meets on its own write).
func tryWrite(rc syscall.RawConn, p []byte) int {
	var n int
	err := rc.Write(func(fd uintptr) bool {
		for {
			m, err := syscall.Write(int(fd), p)
			if err == syscall.EINTR {
				continue
			}
			if err == nil && m > 0 {
				n = m
			}
			return true // never wait for the socket to become writable
		}
	})
	if err != nil {
		return 0
	}
	return n
}

// tryRead makes one non-blocking read attempt on a socket and returns how
// many bytes it got: 0 when nothing is waiting, at EOF or on an error, which
// the next blocking Read then reports.
func tryRead(rc syscall.RawConn, p []byte) int {
	var n int
	err := rc.Read(func(fd uintptr) bool {
		for {
			m, err := syscall.Read(int(fd), p)
			if err == syscall.EINTR {
				continue
			}
			if err == nil && m > 0 {
				n = m
			}
			return true // never wait for the socket to become readable
		}
	})
	if err != nil {
		return 0
	}
	return n
}
