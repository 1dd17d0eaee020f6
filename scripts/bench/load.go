package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// The bulk protocol. Upload: the client sends chunks [u32 big-endian
// length][payload] and a zero length to end; the sink service answers
// [32-byte SHA-256 of all payload bytes][u64 byte count]. Download: the
// client sends [u64 max chunks][u64 max duration ns] to the generator
// service, which sends chunks and the end marker; the client hashes.
// Payload chunk i is a fixed pseudo-random block whose first 8 bytes are i,
// so the content is reproducible (the expected digest is computed after the
// timed part) and a lost, duplicated or reordered chunk changes the digest.
const (
	chunkSize      = 256 << 10
	replySize      = sha256.Size + 8
	genRequestSize = 16
	echoMsgLen     = 64
)

// ErrDigestMismatch means the sink received other bytes than were sent.
var ErrDigestMismatch = errors.New("sha-256 of the bytes the sink received differs from what was sent: the path corrupted, lost or reordered data")

var baseBlock = func() []byte {
	b := make([]byte, chunkSize)
	r := rand.New(rand.NewChaCha8([32]byte{'b', 'e', 'n', 'c', 'h'}))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}()

// digests caches expectedDigest: bulk runs usually send the same count.
var digests struct {
	sync.Mutex
	m map[int64][sha256.Size]byte
}

// expectedDigest is the SHA-256 of chunks 0..n-1.
func expectedDigest(n int64) [sha256.Size]byte {
	digests.Lock()
	defer digests.Unlock()
	if d, ok := digests.m[n]; ok {
		return d
	}
	h := sha256.New()
	blk := make([]byte, chunkSize)
	copy(blk, baseBlock)
	for i := int64(0); i < n; i++ {
		binary.BigEndian.PutUint64(blk, uint64(i))
		h.Write(blk)
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	if digests.m == nil {
		digests.m = map[int64][sha256.Size]byte{}
	}
	digests.m[n] = d
	return d
}

// bulkResult is one stream's outcome.
type bulkResult struct {
	Bytes int64
	End   time.Time // when the sink's reply arrived
}

// writeChunks writes up to maxChunks chunks, fewer if deadline passes
// first (checked every 16 chunks), then the end marker. It returns the
// number of chunks written.
func writeChunks(w io.Writer, maxChunks int64, deadline time.Time) (int64, error) {
	buf := make([]byte, 4+chunkSize)
	binary.BigEndian.PutUint32(buf, chunkSize)
	copy(buf[4:], baseBlock)
	var n int64
	for ; n < maxChunks && (n%16 != 0 || time.Now().Before(deadline)); n++ {
		binary.BigEndian.PutUint64(buf[4:], uint64(n))
		if _, err := w.Write(buf); err != nil {
			return n, fmt.Errorf("send chunk %d: %w", n, err)
		}
	}
	if _, err := w.Write([]byte{0, 0, 0, 0}); err != nil {
		return n, fmt.Errorf("send end marker: %w", err)
	}
	return n, nil
}

// readChunks reads chunks up to the end marker into buf (grown as needed)
// and returns the SHA-256 of the payload and its length.
func readChunks(r io.Reader, buf *[]byte) ([sha256.Size]byte, int64, error) {
	var d [sha256.Size]byte
	var hdr [4]byte
	h := sha256.New()
	var total int64
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return d, total, fmt.Errorf("read chunk header after %d bytes: %w", total, err)
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if n == 0 {
			h.Sum(d[:0])
			return d, total, nil
		}
		if n > len(*buf) {
			*buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, (*buf)[:n]); err != nil {
			return d, total, fmt.Errorf("read chunk after %d bytes: %w", total, err)
		}
		h.Write((*buf)[:n])
		total += int64(n)
	}
}

// checkDigest compares what arrived with the n chunks that were sent.
func checkDigest(n, got int64, digest [sha256.Size]byte) error {
	if got != n*chunkSize {
		return fmt.Errorf("%w: sent %d bytes, %d arrived", ErrDigestMismatch, n*chunkSize, got)
	}
	if digest != expectedDigest(n) {
		return fmt.Errorf("%w (%d bytes)", ErrDigestMismatch, got)
	}
	return nil
}

// bulkFunc moves up to maxChunks chunks over conn in one direction.
type bulkFunc func(ctx context.Context, conn net.Conn, maxChunks int64, maxDur time.Duration) (bulkResult, error)

// upload sends chunks to the sink service, waits for its reply (digest and
// count) and checks it.
func upload(ctx context.Context, conn net.Conn, maxChunks int64, maxDur time.Duration) (bulkResult, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	n, err := writeChunks(conn, maxChunks, time.Now().Add(maxDur))
	if err != nil {
		return bulkResult{}, err
	}
	var reply [replySize]byte
	if _, err := io.ReadFull(conn, reply[:]); err != nil {
		return bulkResult{}, fmt.Errorf("read sink reply after %d chunks: %w", n, err)
	}
	res := bulkResult{Bytes: n * chunkSize, End: time.Now()}
	got := int64(binary.BigEndian.Uint64(reply[sha256.Size:]))
	return res, checkDigest(n, got, [sha256.Size]byte(reply[:sha256.Size]))
}

// download asks the generator service for chunks, hashes what arrives and
// checks it against what the generator sends.
func download(ctx context.Context, conn net.Conn, maxChunks int64, maxDur time.Duration) (bulkResult, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var req [genRequestSize]byte
	binary.BigEndian.PutUint64(req[:], uint64(maxChunks))
	binary.BigEndian.PutUint64(req[8:], uint64(maxDur))
	if _, err := conn.Write(req[:]); err != nil {
		return bulkResult{}, fmt.Errorf("send generator request: %w", err)
	}
	buf := make([]byte, chunkSize)
	digest, got, err := readChunks(conn, &buf)
	if err != nil {
		return bulkResult{}, err
	}
	res := bulkResult{Bytes: got, End: time.Now()}
	return res, checkDigest(got/chunkSize, got, digest)
}

// runBulk opens streams connections with dial and sends total bytes split
// over all of them at once (each stops early after maxDur). It returns the
// bytes moved over the wall time from the first write to the last reply,
// in bytes per second, and the bytes moved.
func runBulk(ctx context.Context, move bulkFunc, dial func(context.Context) (net.Conn, error), streams int, total int64, maxDur time.Duration) (float64, int64, error) {
	conns := make([]net.Conn, 0, streams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range streams {
		c, err := dial(ctx)
		if err != nil {
			return 0, 0, err
		}
		conns = append(conns, c)
	}
	results := make([]bulkResult, streams)
	errs := make([]error, streams)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Go(func() { results[i], errs[i] = move(ctx, c, max(1, total/chunkSize/int64(streams)), maxDur) })
	}
	wg.Wait()
	if err := firstErr(errs); err != nil {
		if ctx.Err() != nil {
			return 0, 0, fmt.Errorf("%v: %w", context.Cause(ctx), err)
		}
		return 0, 0, err
	}
	var moved int64
	end := start
	for _, r := range results {
		moved += r.Bytes
		if r.End.After(end) {
			end = r.End
		}
	}
	return float64(moved) / end.Sub(start).Seconds(), moved, nil
}

// firstErr summarises the errors of parallel streams: the first one and
// how many failed.
func firstErr(errs []error) error {
	var first error
	failed := 0
	for _, e := range errs {
		if e != nil {
			failed++
			if first == nil {
				first = e
			}
		}
	}
	if failed > 1 {
		return fmt.Errorf("%d of %d streams failed, first: %w", failed, len(errs), first)
	}
	return first
}

// measureLatency sends 64-byte messages over conn (an echo service) one at a
// time until dur has elapsed and returns the sorted round-trip times, after
// warm discarded ones.
func measureLatency(ctx context.Context, conn net.Conn, dur time.Duration, warm int) ([]time.Duration, error) {
	rtts, _, err := roundTrips(ctx, conn, dur, warm, make([]time.Duration, 0, 1<<16))
	slices.Sort(rtts)
	return rtts, err
}

// roundTrips sends 64-byte messages over conn (an echo service) one at a
// time until dur has elapsed, and at least warm+1 of them; it appends the
// round-trip times after the first warm to rtts and returns them with the
// number of round trips made.
func roundTrips(ctx context.Context, conn net.Conn, dur time.Duration, warm int, rtts []time.Duration) ([]time.Duration, int, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	msg := make([]byte, echoMsgLen)
	copy(msg, baseBlock)
	back := make([]byte, echoMsgLen)
	end := time.Now().Add(dur)
	for i := 0; ; i++ {
		t0 := time.Now()
		if t0.After(end) && i > warm {
			return rtts, i, nil
		}
		msg[0] = byte(i)
		if _, err := conn.Write(msg); err != nil {
			return rtts, i, fmt.Errorf("latency: write: %w", err)
		}
		if _, err := io.ReadFull(conn, back); err != nil {
			return rtts, i, fmt.Errorf("latency: read echo: %w", err)
		}
		if back[0] != msg[0] {
			return rtts, i, fmt.Errorf("latency: echo returned other bytes than sent")
		}
		if i >= warm {
			rtts = append(rtts, time.Since(t0))
		}
	}
}

// pingConn checks that conn reaches the echo service: one byte there and
// back, within timeout and before ctx ends.
func pingConn(ctx context.Context, conn net.Conn, timeout time.Duration) error {
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.Write([]byte{'p'}); err != nil {
		return err
	}
	var b [1]byte
	_, err := io.ReadFull(conn, b[:])
	return err
}
