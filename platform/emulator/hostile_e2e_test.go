package emulator_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// Bounds of issue 15's hostile-input suite.
const (
	maxAnswer       = 64 << 10 // bytes of one error answer
	maxRSSGrowthKiB = 32 << 10 // peak RSS growth of the process for 8 concurrent amplification requests
)

// amplificationBody is the request that made a 50.8 MB answer: 1 MiB of
// identical invalid services.
func amplificationBody() string {
	const item = `"a b",`
	n := (1<<20 - 64) / len(item)
	return `{"destinationConfig":{"services":[` + strings.Repeat(item, n) + `"a b"]}}`
}

// rawCall sends one signed API call and returns status, body size and the
// error type, failing on transport errors.
func rawCall(t *testing.T, client *http.Client, c *child, op, body string) (int, int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.api+"/", strings.NewReader(body))
	req.Header.Set("X-Amz-Target", "IoTSecuredTunneling."+op)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if err := emulator.SignRequest(req, []byte(body), "AKIDHOSTILE", "hostile-secret", emulator.DefaultRegion, time.Now()); err != nil {
		t.Error(err)
		return 0, 0, ""
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s: %v", op, err)
		return 0, 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, len(b), resp.Header.Get("X-Amzn-ErrorType")
}

// stillAnswers checks the process serves a normal call.
func stillAnswers(t *testing.T, c *child) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	if status, _, typ := rawCall(t, client, c, "ListTunnels", `{"maxResults":1}`); status != 200 {
		t.Fatalf("the emulator no longer answers: %d %s\n%s", status, typ, c.stderr.String())
	}
}

// TestHostileAmplification sends the amplification request 8 times at once
// (three rounds) to a separate emulator process: every answer stays under
// 64 KiB and the process's peak RSS grows by at most 32 MiB.
func TestHostileAmplification(t *testing.T) {
	c := startChild(t, childConfig{StateDir: t.TempDir(), APIAddr: "127.0.0.1:0", DataAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"})
	stillAnswers(t, c)
	base, baseHWM := c.memKiB(t, "VmRSS"), c.memKiB(t, "VmHWM")
	body := amplificationBody()
	client := &http.Client{Timeout: 60 * time.Second}
	defer client.CloseIdleConnections()
	biggest := 0
	var mu sync.Mutex
	for range 3 {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				status, n, typ := rawCall(t, client, c, "OpenTunnel", body)
				if status != http.StatusBadRequest || typ != "ValidationException" {
					t.Errorf("amplification request: %d %s", status, typ)
				}
				mu.Lock()
				biggest = max(biggest, n)
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	stillAnswers(t, c)
	hwm, rss := c.memKiB(t, "VmHWM"), c.memKiB(t, "VmRSS")
	growth := hwm - max(base, baseHWM)
	t.Logf("request %d bytes; largest answer %d bytes; RSS %d KiB before, peak %d KiB (+%d KiB), %d KiB after",
		len(body), biggest, base, hwm, growth, rss)
	if biggest > maxAnswer {
		t.Errorf("answer of %d bytes, want at most %d", biggest, maxAnswer)
	}
	if growth > maxRSSGrowthKiB {
		t.Errorf("peak RSS grew by %d KiB, want at most %d KiB", growth, maxRSSGrowthKiB)
	}
}

// TestHostileBodies sends a 100 MB body (with and without Content-Length),
// 1 MiB of nested brackets and a body trickling in slower than the read
// timeout: each is refused or dropped, and the process still answers with
// bounded memory.
func TestHostileBodies(t *testing.T) {
	const readTimeout = time.Second
	c := startChild(t, childConfig{StateDir: t.TempDir(), APIAddr: "127.0.0.1:0", DataAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		APIReadTimeout: readTimeout})
	stillAnswers(t, c)
	base := c.memKiB(t, "VmRSS")
	addr := strings.TrimPrefix(c.api, "http://")

	t.Run("100 MB with Content-Length", func(t *testing.T) {
		status := sendHuge(t, addr, 100<<20, false)
		if status != "" && !strings.Contains(status, "413") {
			t.Errorf("answer %q, want 413 or a closed connection", status)
		}
		stillAnswers(t, c)
	})
	t.Run("100 MB chunked", func(t *testing.T) {
		status := sendHuge(t, addr, 100<<20, true)
		if status != "" && !strings.Contains(status, "413") {
			t.Errorf("answer %q, want 413 or a closed connection", status)
		}
		stillAnswers(t, c)
	})
	t.Run("deep JSON", func(t *testing.T) {
		client := &http.Client{Timeout: 30 * time.Second}
		defer client.CloseIdleConnections()
		status, n, typ := rawCall(t, client, c, "ListTunnels", `{"x":`+strings.Repeat("[", 1<<20-16)+`}`)
		if status != http.StatusBadRequest || typ != "SerializationException" || n > maxAnswer {
			t.Errorf("deep JSON: %d %s, %d bytes", status, typ, n)
		}
		stillAnswers(t, c)
	})
	t.Run("slow body", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.1\r\n"+
			"X-Amz-Target: IoTSecuredTunneling.ListTunnels\r\nContent-Length: 1000\r\n\r\n", addr)
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			_, _ = io.Copy(io.Discard, conn) // ends when the server drops the connection
		}()
		deadline := time.After(30 * readTimeout) // generous: the drop is due after readTimeout
		for {
			select {
			case <-closed:
				stillAnswers(t, c)
				return
			case <-deadline:
				t.Fatalf("a body sent 1 byte every 100 ms was not dropped after %s", 30*readTimeout)
			case <-time.After(100 * time.Millisecond):
				if _, err := conn.Write([]byte(" ")); err != nil {
					stillAnswers(t, c) // dropped
					return
				}
			}
		}
	})
	rss := c.memKiB(t, "VmRSS")
	hwm := c.memKiB(t, "VmHWM")
	t.Logf("RSS %d KiB before, peak %d KiB, %d KiB after", base, hwm, rss)
	if hwm-base > maxRSSGrowthKiB {
		t.Errorf("peak RSS grew by %d KiB", hwm-base)
	}
}

// sendHuge streams n bytes of body and returns the status line the server
// answered, or "" when it closed the connection first.
func sendHuge(t *testing.T, addr string, n int64, chunked bool) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	te := fmt.Sprintf("Content-Length: %d", n)
	if chunked {
		te = "Transfer-Encoding: chunked"
	}
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.1\r\n"+
		"X-Amz-Target: IoTSecuredTunneling.ListTunnels\r\nAuthorization: x\r\n%s\r\n\r\n", addr, te)
	status := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		status <- strings.TrimSpace(line)
	}()
	chunk := make([]byte, 64<<10)
	for sent := int64(0); sent < n; sent += int64(len(chunk)) {
		var err error
		if chunked {
			_, err = fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk)
		} else {
			_, err = conn.Write(chunk)
		}
		if err != nil {
			break // the server stopped reading and closed: what we want
		}
	}
	return <-status
}

// TestHostileConcurrentOpen opens 1000 tunnels at once: every call is
// answered (and persisted), and the process still answers.
func TestHostileConcurrentOpen(t *testing.T) {
	const n = 1000
	c := startChild(t, childConfig{StateDir: t.TempDir(), APIAddr: "127.0.0.1:0", DataAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		MaxOpenTunnels: n})
	client := &http.Client{Timeout: 120 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			status, _, _ := rawCall(t, client, c, "OpenTunnel", fmt.Sprintf(`{"description":"t%d","destinationConfig":{"thingName":"pi-%d","services":["SSH"]}}`, i, i%50))
			mu.Lock()
			codes[status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("%d concurrent OpenTunnel: %v in %s", n, codes, time.Since(start).Round(time.Millisecond))
	if codes[200] != n {
		t.Errorf("answers %v, want %d x 200", codes, n)
	}
	status, _, _ := rawCall(t, client, c, "OpenTunnel", `{}`)
	if status != http.StatusBadRequest {
		t.Errorf("open %d: %d, want LimitExceededException", n+1, status)
	}
	stillAnswers(t, c)
}
