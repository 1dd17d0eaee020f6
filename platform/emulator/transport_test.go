package emulator

import (
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

func TestPingAnswered(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{}`)
	c := env.dial(t, dialOpts{token: tun.src})
	pong := make(chan string, 1)
	c.c.SetPongHandler(func(s string) error { pong <- s; return nil })
	if err := c.c.WriteControl(websocket.PingMessage, []byte("1764000000000"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	c.recv(t) // SERVICE_IDS; reading also runs the pong handler
	go func() { _, _, _ = c.c.NextReader() }()
	select {
	case got := <-pong:
		if got != "1764000000000" {
			t.Fatalf("pong payload %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no pong")
	}
	_ = c.c.Close()
}

func TestAPIOverTLS(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.APITLS = true })
	if !strings.HasPrefix(env.e.APIURL(), "https://127.0.0.1:") {
		t.Fatalf("APIURL %s", env.e.APIURL())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: env.e.CAPool(), MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, env.e.APIURL()+"/", strings.NewReader(`{}`))
	req.Header.Set("X-Amz-Target", "IoTSecuredTunneling.ListTunnels")
	req.Header.Set("Content-Type", jsonContentType)
	env.sign(t, req)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body := readAllString(resp.Body); resp.StatusCode != 200 || body != `{"tunnelSummaries":[]}` {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
}

func TestDataPlaintext(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.DataPlaintext = true })
	tun := env.open(t, `{}`)
	d := websocket.Dialer{Subprotocols: []string{protocol.SubprotocolV2}}
	c, resp, err := d.Dial("ws://"+env.e.DataEndpoint()+"/tunnel?local-proxy-mode=source", http.Header{"Access-Token": {tun.src}})
	if err != nil {
		t.Fatalf("dial: %v %s", err, respText(resp))
	}
	defer c.Close()
	if resp.Header.Get("Sec-Websocket-Protocol") != protocol.SubprotocolV2 {
		t.Fatalf("subprotocol %q", resp.Header.Get("Sec-Websocket-Protocol"))
	}
}

func TestIdleTimeout(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.IdleTimeout = 100 * time.Millisecond })
	tun := env.open(t, `{}`)
	c := env.dial(t, dialOpts{token: tun.src})
	c.recv(t)
	_ = c.c.SetReadDeadline(deadline())
	_, _, err := c.c.NextReader()
	var ce *websocket.CloseError
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the emulator did not drop the idle connection")
	}
	if !errors.As(err, &ce) || ce.Code != websocket.CloseAbnormalClosure {
		t.Fatalf("idle connection ended with %v, want a dropped connection (1006, no close frame)", err)
	}
}

// TestBandwidth checks the shaper's lower bound only: 256 KiB at 1 MB/s
// cannot arrive in less than about 0.26 s, however fast the machine.
func TestBandwidth(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.Bandwidth = 1_000_000 })
	tun := env.open(t, `{}`)
	src := env.dial(t, dialOpts{token: tun.src})
	dst := env.dial(t, dialOpts{token: tun.dst, mode: "destination"})
	src.recv(t)
	dst.recv(t)
	chunk := make([]byte, 32<<10)
	start := time.Now()
	for range 8 {
		src.send(t, data("", 1, chunk))
	}
	for range 8 {
		dst.recv(t)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("256 KiB took %s at 1 MB/s", el)
	}
}
