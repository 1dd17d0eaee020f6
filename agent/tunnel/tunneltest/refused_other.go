//go:build !unix

package tunneltest

import (
	"net"
	"testing"
)

// RefusedAddr returns a loopback "127.0.0.1:port" nothing listens on: a
// port from a listener opened and closed again (another listener may take
// it; the unix version holds the port).
func RefusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
