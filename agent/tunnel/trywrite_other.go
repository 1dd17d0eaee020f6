//go:build !unix

package tunnel

import "syscall"

const canTryWrite = false

func tryWrite(syscall.RawConn, []byte) int { return 0 }

func tryRead(syscall.RawConn, []byte) int { return 0 }

func readableWaiter(syscall.RawConn) func() { return func() {} }
