package emulator

import (
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// BenchmarkRelay pushes DATA frames (64512-byte payloads two per WebSocket
// message, as the C++ localproxy sends them, or 1 KiB payloads a hundred per
// message, to show the per-frame cost) from a raw source client
// through the emulator's TLS relay to a raw destination client, and
// compares it with a plain TLS loopback copy of the same bytes measured in
// the same run (ratio metric: relay / baseline).
func BenchmarkRelay(b *testing.B) {
	b.Run("64KiB", func(b *testing.B) { benchRelay(b, protocol.MaxPayload, 2) })
	b.Run("1KiB", func(b *testing.B) { benchRelay(b, 1024, 100) })
}

func benchRelay(b *testing.B, size, perMsg int) {
	env := startEmulator(b, nil)
	tun := env.open(b, `{"destinationConfig":{"services":["SSH"]}}`)
	src := env.dial(b, dialOpts{token: tun.src})
	dst := env.dial(b, dialOpts{token: tun.dst, mode: "destination"})
	src.recv(b)
	dst.recv(b)
	payload := make([]byte, size)
	var msg []byte
	for range perMsg {
		msg, _ = protocol.AppendFrame(msg, &protocol.Message{Type: protocol.TypeData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: payload})
	}
	total := int64(b.N) * int64(len(msg))
	base := baselineTLS(b, env, total)

	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- drain(dst.c, total) }()
	for range b.N {
		if err := src.c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	relay := float64(total) / elapsed.Seconds()
	b.ReportMetric(relay/1e6, "relay-MB/s")
	b.ReportMetric(base/1e6, "baseline-MB/s")
	b.ReportMetric(relay/base, "ratio")
}

func drain(c *websocket.Conn, total int64) error {
	for n := int64(0); n < total; {
		_, r, err := c.NextReader()
		if err != nil {
			return err
		}
		m, err := io.Copy(io.Discard, r)
		if err != nil {
			return err
		}
		n += m
	}
	return nil
}

// baselineTLS copies total bytes over a TLS loopback connection with the
// emulator's certificate and returns bytes per second.
func baselineTLS(b *testing.B, env *testEnv, total int64) float64 {
	cert, err := env.e.ca.ServerCertificate()
	if err != nil {
		b.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		_, err = io.CopyN(io.Discard, c, total)
		got <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: env.e.CAPool(), ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2*(protocol.MaxPayload+16))
	start := time.Now()
	for n := int64(0); n < total; n += int64(len(buf)) {
		if _, err := c.Write(buf[:min(int64(len(buf)), total-n)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-got; err != nil {
		b.Fatal(err)
	}
	return float64(total) / time.Since(start).Seconds()
}
