package emulator

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// expectRefusal dials and checks the HTTP status and body text of the refusal.
func expectRefusal(t *testing.T, env *testEnv, o dialOpts, status int, text string) {
	t.Helper()
	c, resp, err := env.dialRaw(o)
	if err == nil {
		c.Close()
		t.Fatalf("handshake accepted, want %d %q", status, text)
	}
	if resp == nil {
		t.Fatalf("no HTTP response: %v", err)
	}
	body := readAllString(resp.Body)
	if resp.StatusCode != status || !strings.Contains(body, text) {
		t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, status, text)
	}
	if resp.Header.Get(channelIDHeader) == "" {
		t.Error("refusal without channel-id header")
	}
}

func TestHandshakeRequestRules(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{"destinationConfig":{"services":["SSH"]}}`)
	cookie := http.Header{"Cookie": {tokenCookie + "=" + tun.src}}
	tests := []struct {
		name   string
		o      dialOpts
		status int
		text   string
	}{
		{"other path", dialOpts{token: tun.src, path: "/tunnels"}, 400, "Invalid request path"},
		{"no mode", dialOpts{token: tun.src, mode: "x&y=1"}, 400, "Invalid local-proxy-mode"},
		{"bad mode", dialOpts{token: tun.src, mode: "both"}, 400, "Invalid local-proxy-mode"},
		{"two modes", dialOpts{token: tun.src, mode: "source&local-proxy-mode=source"}, 400, "Invalid local-proxy-mode"},
		{"no token", dialOpts{}, 400, "exactly one access token"},
		{"header and cookie", dialOpts{token: tun.src, header: cookie}, 400, "exactly one access token"},
		{"two headers", dialOpts{header: http.Header{"Access-Token": {tun.src, tun.src}}}, 400, "exactly one access token"},
		{"two cookies", dialOpts{header: http.Header{"Cookie": {tokenCookie + "=a; " + tokenCookie + "=b"}}}, 400, "exactly one access token"},
		{"client token 31", dialOpts{token: tun.src, clientToken: ctA[:31]}, 400, "Invalid client token"},
		{"client token 129", dialOpts{token: tun.src, clientToken: strings.Repeat("a", 129)}, 400, "Invalid client token"},
		{"client token bad char", dialOpts{token: tun.src, clientToken: ctA[:31] + "_"}, 400, "Invalid client token"},
		{"two client tokens", dialOpts{token: tun.src, header: http.Header{"Client-Token": {ctA, ctA}}}, 400, "at most one client-token"},
		{"no subprotocol", dialOpts{token: tun.src, subs: []string{"chat"}}, 400, "No supported subprotocol"},
		{"too large", dialOpts{token: tun.src, header: http.Header{"X-Pad": {strings.Repeat("p", 4000)}}}, 400, "Request too large"},
		{"unknown token", dialOpts{token: "AQGAAnope"}, 401, msgTokenUnknown},
		{"mode mismatch", dialOpts{token: tun.dst, mode: "source"}, 400, "not valid for local-proxy-mode=source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { expectRefusal(t, env, tt.o, tt.status, tt.text) })
	}
	// None of the refusals consumed the token.
	c := env.dial(t, dialOpts{header: cookie, subs: []string{protocol.SubprotocolV1, protocol.SubprotocolV3, protocol.SubprotocolV2}})
	if got := c.resp.Header.Get("Sec-Websocket-Protocol"); got != protocol.SubprotocolV3 {
		t.Fatalf("subprotocol %q, want the highest offered", got)
	}
	if len(c.resp.Header.Get(channelIDHeader)) != 32 {
		t.Fatalf("channel-id %q", c.resp.Header.Get(channelIDHeader))
	}
	if strings.Contains(env.logs.String(), tun.src) {
		t.Fatal("an access token appears in the log")
	}
}

func TestTokenSingleUse(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{}`)
	c := env.dial(t, dialOpts{token: tun.src})
	expectRefusal(t, env, dialOpts{token: tun.src}, 400, msgTokenReused)
	c.c.Close()
	expectRefusal(t, env, dialOpts{token: tun.src, clientToken: ctA}, 400, msgTokenReused)
}

func TestClientTokenBinding(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{}`)
	first := env.dial(t, dialOpts{token: tun.dst, mode: "destination", clientToken: ctA})
	expectRefusal(t, env, dialOpts{token: tun.dst, mode: "destination", clientToken: ctB}, 400, msgClientMismatch)
	expectRefusal(t, env, dialOpts{token: tun.dst, mode: "destination"}, 400, msgClientMismatch)
	// Reconnect with the same client token: accepted, and it replaces the first.
	env.dial(t, dialOpts{token: tun.dst, mode: "destination", clientToken: ctA})
	if code := first.closeCode(t); code != websocket.CloseNormalClosure {
		t.Fatalf("replaced connection closed with %d", code)
	}
	// A client token bound to one access token cannot pair with another.
	expectRefusal(t, env, dialOpts{token: tun.src, clientToken: ctA}, 400, "already bound")
	env.dial(t, dialOpts{token: tun.src, clientToken: ctB})
}

func TestRotationRevokesTokens(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{}`)
	live := env.dial(t, dialOpts{token: tun.src})
	res := env.mustCall(t, "RotateTunnelAccessToken", js(map[string]string{"tunnelId": tun.id, "clientMode": "ALL"}))
	expectRefusal(t, env, dialOpts{token: tun.dst, mode: "destination"}, 401, msgTokenUnknown)
	dst := env.dial(t, dialOpts{token: res.str("destinationAccessToken"), mode: "destination"})
	// The connection made with the revoked token stays up and still relays.
	dst.recv(t) // SERVICE_IDS
	live.recv(t)
	live.send(t, start("", 1), data("", 1, []byte("after rotation")))
	if m := dst.recv(t); m.Type != protocol.TypeStreamStart {
		t.Fatalf("got %v", m.Type)
	}
	if m := dst.recv(t); string(m.Payload) != "after rotation" {
		t.Fatalf("got %q", m.Payload)
	}
}

func TestCloseTunnelDropsConnections(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{}`)
	src := env.dial(t, dialOpts{token: tun.src, clientToken: ctA})
	dst := env.dial(t, dialOpts{token: tun.dst, mode: "destination"})
	waitConnected(t, env, tun.id, "CONNECTED", "CONNECTED")
	env.mustCall(t, "CloseTunnel", js(map[string]string{"tunnelId": tun.id}))
	for _, c := range []*wsClient{src, dst} {
		if code := c.closeCode(t); code != websocket.CloseNormalClosure {
			t.Fatalf("close code %d, want 1000", code)
		}
	}
	waitConnected(t, env, tun.id, "DISCONNECTED", "DISCONNECTED")
	expectRefusal(t, env, dialOpts{token: tun.src, clientToken: ctA}, 401, msgTunnelClosed)
}

func TestExpiryDropsConnections(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{"timeoutConfig":{"maxLifetimeTimeoutMinutes":10}}`)
	src := env.dial(t, dialOpts{token: tun.src, clientToken: ctA})
	waitConnected(t, env, tun.id, "CONNECTED", "DISCONNECTED")
	env.clock.Advance(10 * time.Minute)
	env.e.sweep()
	if code := src.closeCode(t); code != websocket.CloseNormalClosure {
		t.Fatalf("close code %d, want 1000", code)
	}
	expectRefusal(t, env, dialOpts{token: tun.src, clientToken: ctA}, 401, msgTunnelClosed)
	if st := describeStatus(t, env, tun.id); st != "CLOSED" {
		t.Fatalf("status %s", st)
	}
}

func waitConnected(t *testing.T, env *testEnv, id, src, dst string) {
	t.Helper()
	waitFor(t, "connection states "+src+"/"+dst, func() bool {
		d := env.mustCall(t, "DescribeTunnel", js(map[string]string{"tunnelId": id})).body["tunnel"].(map[string]any)
		return d["sourceConnectionState"].(map[string]any)["status"] == src &&
			d["destinationConnectionState"].(map[string]any)["status"] == dst
	})
}

// TestNotAnUpgrade sends plain HTTP requests to /tunnel: refused without
// consuming the token.
func TestNotAnUpgrade(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{}`)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: env.e.CAPool(), MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	for _, h := range []http.Header{
		{},
		{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"8"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}},
		{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"13"}},
	} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+env.e.DataEndpoint()+"/tunnel?local-proxy-mode=source", nil)
		req.Header = h
		req.Header.Set("Access-Token", tun.src)
		req.Header.Set("Sec-Websocket-Protocol", protocol.SubprotocolV3)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAllString(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(body, "Not a WebSocket upgrade") {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	env.dial(t, dialOpts{token: tun.src})
}

func TestRotateDisconnects(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.RotateDisconnects = true })
	tun := env.open(t, `{}`)
	src := env.dial(t, dialOpts{token: tun.src})
	dst := env.dial(t, dialOpts{token: tun.dst, mode: "destination"})
	waitConnected(t, env, tun.id, "CONNECTED", "CONNECTED")
	env.mustCall(t, "RotateTunnelAccessToken", js(map[string]string{"tunnelId": tun.id, "clientMode": "SOURCE"}))
	if code := src.closeCode(t); code != websocket.CloseNormalClosure {
		t.Fatalf("close code %d", code)
	}
	waitConnected(t, env, tun.id, "DISCONNECTED", "CONNECTED")
	dst.recv(t) // SERVICE_IDS: the destination is still up
}
