//go:build !unix

package tunnel

import "syscall"

const canTryWrite = false

// rawTry is never made here (canTryWrite is false).
type rawTry struct{}

func newTryWriter(syscall.RawConn) *rawTry { return nil }

func newTryReader(syscall.RawConn) *rawTry { return nil }

func (*rawTry) try([]byte) int { return 0 }

func readableWaiter(syscall.RawConn) func() { return func() {} }
