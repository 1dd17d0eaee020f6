package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Check sizes: total bytes through the echo, split over concurrent connections.
const (
	checkEchoBytes = 32 << 20
	checkEchoConns = 4
	checkHTTPBytes = 4 << 20
)

// runChecks pushes data through every service and reports each result on w.
func runChecks(ctx context.Context, w io.Writer, addrs map[string]string, echoService string) error {
	start := time.Now()
	var failed []string
	if svc := echoService; svc != "" {
		if err := checkEcho(ctx, w, svc, addrs[svc]); err != nil {
			fmt.Fprintf(w, "FAIL %s echo: %v\n", svc, err)
			failed = append(failed, svc)
		}
	}
	if err := checkHTTP(ctx, w, addrs["HTTP"]); err != nil {
		fmt.Fprintf(w, "FAIL HTTP: %v\n", err)
		failed = append(failed, "HTTP")
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", errCheck, strings.Join(failed, ", "))
	}
	fmt.Fprintf(w, "PASS: every service carried its data intact (%.1f s)\n", time.Since(start).Seconds())
	return nil
}

// checkEcho sends checkEchoBytes over checkEchoConns concurrent connections and
// compares the SHA-256 of what came back with what was sent.
func checkEcho(ctx context.Context, w io.Writer, service, addr string) error {
	per := int64(checkEchoBytes / checkEchoConns)
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for i := 1; i <= checkEchoConns; i++ { // all at once: they share one V3 stream
		g.Go(func() error { return echoOnce(gctx, addr, uint64(i), per) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	el := time.Since(start)
	mib := float64(checkEchoBytes) / (1 << 20)
	fmt.Fprintf(w, "ok   %s: %d concurrent connections, %.0f MiB each way through the echo, SHA-256 match, %.1f s, %.1f MiB/s\n",
		service, checkEchoConns, mib, el.Seconds(), mib/el.Seconds())
	return nil
}

// echoWindow bounds the bytes in flight per echo connection. The tunnel protocol has
// no flow control, and an echo couples both directions, so an unbounded sender
// would overrun the per-connection buffers of the proxies (which reset the
// connection when they fill); a real client such as ssh is similarly windowed.
const echoWindow = 256 << 10

// echoOnce writes n pattern bytes and reads n bytes back on one connection, with at
// most echoWindow bytes outstanding. The tunnel has no half-close, so it reads
// exactly n bytes before closing.
func echoOnce(ctx context.Context, addr string, seed uint64, n int64) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	sent, got := sha256.New(), sha256.New()
	var recv atomic.Int64
	progress, readDone := make(chan struct{}, 1), make(chan struct{})
	werr := make(chan error, 1)
	go func() { werr <- windowedWrite(c, io.TeeReader(newPattern(seed, n), sent), &recv, progress, readDone) }()
	m, rerr := io.CopyN(got, &countingReader{r: c, n: &recv, progress: progress}, n)
	close(readDone)
	c.Close()
	if err := <-werr; err != nil && rerr == nil {
		return fmt.Errorf("connection %d: sending: %w", seed, err)
	}
	if rerr != nil {
		return fmt.Errorf("connection %d: got %d of %d bytes back: %w", seed, m, n, rerr)
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return fmt.Errorf("connection %d: SHA-256 of the echoed data differs from what was sent", seed)
	}
	return nil
}

// windowedWrite copies src to w, waiting while more than echoWindow bytes are
// unacknowledged; it gives up when the reader stopped (readDone closed).
func windowedWrite(w io.Writer, src io.Reader, recv *atomic.Int64, progress, readDone <-chan struct{}) error {
	buf := make([]byte, 32<<10)
	var sent int64
	for {
		for sent-recv.Load() > echoWindow {
			select {
			case <-progress:
			case <-readDone:
				return errReaderStopped
			}
		}
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return werr
			}
			sent += int64(k)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// errReaderStopped ends the writer of a connection whose reading side failed.
var errReaderStopped = errors.New("the echo stopped answering")

// countingReader counts what it reads and signals progress to the writer.
type countingReader struct {
	r        io.Reader
	n        *atomic.Int64
	progress chan<- struct{}
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	select {
	case c.progress <- struct{}{}:
	default:
	}
	return k, err
}

// checkHTTP GETs the page and a larger generated body and verifies both.
func checkHTTP(ctx context.Context, w io.Writer, addr string) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	body, _, err := get(ctx, hc, "http://"+addr+"/")
	if err != nil {
		return err
	}
	if sha256.Sum256(body) != sha256.Sum256([]byte(pageHTML)) {
		return fmt.Errorf("GET / returned a different page (%d bytes)", len(body))
	}
	start := time.Now()
	body, hdr, err := get(ctx, hc, fmt.Sprintf("http://%s/data?size=%d&seed=7", addr, checkHTTPBytes))
	if err != nil {
		return err
	}
	el := time.Since(start)
	sum := sha256.Sum256(body)
	if len(body) != checkHTTPBytes || hex.EncodeToString(sum[:]) != hdr.Get(sumHeader) {
		return fmt.Errorf("GET /data: %d bytes, SHA-256 mismatch", len(body))
	}
	mib := float64(checkHTTPBytes) / (1 << 20)
	fmt.Fprintf(w, "ok   HTTP: GET / (%d bytes) and GET /data (%.0f MiB), SHA-256 match, %.1f MiB/s\n",
		len(pageHTML), mib, mib/el.Seconds())
	return nil
}

func get(ctx context.Context, hc *http.Client, url string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: reading body: %w", req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: HTTP %d", req.URL.Path, resp.StatusCode)
	}
	return body, resp.Header, nil
}
