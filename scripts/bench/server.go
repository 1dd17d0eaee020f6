package main

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"
)

// server is a loopback TCP service run by the bench itself: the sink or the
// echo service. Close stops it and closes every connection it accepted.
type server struct {
	ln     net.Listener
	handle func(net.Conn)
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func startServer(handle func(net.Conn)) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{ln: ln, handle: handle, conns: map[net.Conn]struct{}{}}
	s.wg.Go(s.acceptLoop)
	return s, nil
}

// startUnixServer is startServer on a unix socket at path.
func startUnixServer(path string, handle func(net.Conn)) (*server, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	s := &server{ln: ln, handle: handle, conns: map[net.Conn]struct{}{}}
	s.wg.Go(s.acceptLoop)
	return s, nil
}

func (s *server) Addr() string {
	if s.ln.Addr().Network() == "unix" {
		return "unix:" + s.ln.Addr().String()
	}
	return s.ln.Addr().String()
}

func (s *server) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer s.forget(c)
			s.handle(c)
		}()
	}
}

func (s *server) forget(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops accepting, closes all connections and waits for the handlers.
func (s *server) Close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// handleSink reads upload streams, hashing the payload, and answers each
// end marker with the digest and byte count. A connection may carry
// several uploads one after the other.
func handleSink(c net.Conn) {
	buf := make([]byte, chunkSize)
	for {
		d, total, err := readChunks(c, &buf)
		if err != nil {
			return
		}
		var reply [replySize]byte
		copy(reply[:], d[:])
		binary.BigEndian.PutUint64(reply[sha256.Size:], uint64(total))
		if _, err := c.Write(reply[:]); err != nil {
			return
		}
	}
}

// handleGen answers each download request with the chunks asked for.
func handleGen(c net.Conn) {
	var req [genRequestSize]byte
	for {
		if _, err := io.ReadFull(c, req[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint64(req[:]))
		maxDur := time.Duration(binary.BigEndian.Uint64(req[8:]))
		if _, err := writeChunks(c, n, time.Now().Add(maxDur)); err != nil {
			return
		}
	}
}

// handleEcho writes back what it reads.
func handleEcho(c net.Conn) {
	buf := make([]byte, 32<<10)
	for first := true; ; first = false {
		n, err := c.Read(buf)
		if first && n > 0 {
			echoFirstByte.Store(time.Now().UnixNano())
		}
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
