package control

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tunnel-agent/tunnel-agent/agent"
)

// FuzzSocketRequest: whatever a client sends, the answer is one JSON line,
// either the status or an error, and reading never takes more than
// MaxRequest+1 bytes.
func FuzzSocketRequest(f *testing.F) {
	for _, s := range []string{"status\n", "status", "\n", "status\r\n", "statusstatus\n", "\x00\xff",
		strings.Repeat("x", MaxRequest+10), `{"request":"status"}` + "\n", "status\nstatus\n"} {
		f.Add([]byte(s))
	}
	s, err := New(Options{Agent: fixedAgent{agent.Snapshot{}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &countingReader{r: iotest.OneByteReader(bytes.NewReader(in))}
		req, err := readRequest(r)
		if r.n > MaxRequest+1 {
			t.Fatalf("read %d bytes", r.n)
		}
		var out bytes.Buffer
		if err != nil || req != RequestStatus {
			writeDoc(&out, badRequest("x"))
		} else {
			writeDoc(&out, s.Status())
		}
		if !json.Valid(out.Bytes()) || bytes.Count(out.Bytes(), []byte("\n")) != 1 {
			t.Fatalf("answer %q", out.Bytes())
		}
	})
}

// FuzzMetricsRequest: any request head gets a status line and a body, and
// only GET/HEAD /metrics over HTTP/1.x gets 200.
func FuzzMetricsRequest(f *testing.F) {
	for _, s := range []string{"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD /metrics HTTP/1.0\r\n\r\n",
		"POST /metrics HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", "GET /metrics?x=1 HTTP/2\r\n\r\n",
		"garbage", "\r\n\r\n", strings.Repeat("H", maxHead+10)} {
		f.Add([]byte(s))
	}
	s, err := New(Options{Agent: fixedAgent{agent.Snapshot{}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &countingReader{r: bytes.NewReader(in)}
		status, body := s.metricsAnswer(r)
		if r.n > maxHead+1024 {
			t.Fatalf("read %d bytes", r.n)
		}
		ok := strings.HasPrefix(status, "200")
		head := string(in)
		if ok && !(strings.HasPrefix(head, "GET /metrics") || strings.HasPrefix(head, "HEAD /metrics")) {
			t.Fatalf("200 for %q", in)
		}
		if !ok && body.Len() == 0 {
			t.Fatalf("status %s without a body", status)
		}
	})
}

type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
