package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// pageHTML is the demo's web page, served on / through the HTTP service.
const pageHTML = `<!doctype html>
<html><head><title>tunnel-agent demo</title></head>
<body><h1>Hello through AWS IoT Secure Tunneling</h1>
<p>This page is served on the "device" and reached through the local emulator,
the tunnel agent and tunnelctl's source proxy.</p></body></html>
`

// Header and limits of the /data endpoint, which the check uses for a larger GET.
const (
	sumHeader   = "X-Content-Sha256"
	maxDataSize = 64 << 20
)

// localServices are the demo's "device-side" services on loopback.
type localServices struct {
	echoLn net.Listener
	httpLn net.Listener
	http   *http.Server
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startServices() (*localServices, error) {
	s := &localServices{conns: map[net.Conn]struct{}{}}
	var err error
	if s.echoLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("starting the echo service: %w", err)
	}
	if s.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		s.echoLn.Close()
		return nil, fmt.Errorf("starting the web page: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, pageHTML)
	})
	mux.HandleFunc("/data", serveData)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Go(func() { _ = s.http.Serve(s.httpLn) })
	s.wg.Go(s.acceptEcho)
	return s, nil
}

func (s *localServices) EchoAddr() string { return s.echoLn.Addr().String() }
func (s *localServices) HTTPAddr() string { return s.httpLn.Addr().String() }

func (s *localServices) acceptEcho() {
	for {
		c, err := s.echoLn.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			_, _ = io.Copy(c, c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		})
	}
}

// Close stops the services and waits for their goroutines.
func (s *localServices) Close() {
	s.echoLn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.http.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// serveData answers /data?size=N&seed=S with N pseudo-random bytes and their SHA-256 in a trailer-free header.
func serveData(w http.ResponseWriter, r *http.Request) {
	size, err := strconv.Atoi(r.URL.Query().Get("size"))
	if err != nil || size < 0 || size > maxDataSize {
		http.Error(w, "size must be 0..64 MiB", http.StatusBadRequest)
		return
	}
	seed, _ := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
	sum := sha256.New()
	if _, err := io.Copy(sum, newPattern(seed, int64(size))); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set(sumHeader, hex.EncodeToString(sum.Sum(nil)))
	w.Header().Set("Content-Length", strconv.Itoa(size))
	_, _ = io.Copy(w, newPattern(seed, int64(size)))
}

// newPattern returns n deterministic pseudo-random bytes for seed.
func newPattern(seed uint64, n int64) io.Reader {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(key), n)
}

// sshListening reports whether something accepts TCP connections on addr.
func sshListening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

var errCheck = errors.New("demo check failed")

// getenv is os.Getenv, kept in one place for the demo's only environment read.
var getenv = os.Getenv
