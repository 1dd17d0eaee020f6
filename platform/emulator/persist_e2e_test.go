package emulator_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// TestRestartAfterKill9 kills the emulator process with SIGKILL while a
// tunnel carries data, starts it again on the same state directory and
// ports, and checks that both ends reconnect with their client tokens and
// carry data again, and that DescribeTunnel shows the same tunnel with the
// same expiry.
func TestRestartAfterKill9(t *testing.T) {
	state := t.TempDir()
	c1 := startChild(t, childConfig{StateDir: state, APIAddr: "127.0.0.1:0", DataAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"})
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	status, open := c1.call(t, client, "OpenTunnel",
		`{"description":"survives","destinationConfig":{"thingName":"pi-9","services":["SSH"]},"tags":[{"key":"k","value":"v"}],"timeoutConfig":{"maxLifetimeTimeoutMinutes":30}}`)
	if status != 200 {
		t.Fatalf("OpenTunnel: %d %v", status, open)
	}
	id := open["tunnelId"].(string)
	describe := func(c *child) map[string]any {
		t.Helper()
		status, d := c.call(t, client, "DescribeTunnel", `{"tunnelId":"`+id+`"}`)
		if status != 200 {
			t.Fatalf("DescribeTunnel: %d %v", status, d)
		}
		return d["tunnel"].(map[string]any)
	}
	waitConnected := func(c *child) {
		t.Helper()
		var src, dst any
		if !tunneltest.Poll(20*time.Second, func() bool {
			tun := describe(c)
			src = tun["sourceConnectionState"].(map[string]any)["status"]
			dst = tun["destinationConnectionState"].(map[string]any)["status"]
			return src == "CONNECTED" && dst == "CONNECTED"
		}) {
			t.Fatalf("both ends never connected (source %v, destination %v):\n%s", src, dst, c.stderr.String())
		}
	}

	pool := caPool(t, state)
	echo := hashServer(t)
	defer echo.Close()
	mk := func(mode tunnel.Mode, token string, services map[string]string) *tunnel.Session {
		s, err := tunnel.New(tunnel.Config{Mode: mode, Endpoint: c1.data, AccessToken: token, RootCAs: pool,
			Services: services, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond, ConnBufferSize: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dst := mk(tunnel.ModeDestination, open["destinationAccessToken"].(string), map[string]string{"SSH": echo.Addr().String()})
	src := mk(tunnel.ModeSource, open["sourceAccessToken"].(string), map[string]string{"SSH": "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	runs := make(chan error, 2)
	go func() { runs <- dst.Run(ctx) }()
	go func() { runs <- src.Run(ctx) }()
	defer func() {
		cancel()
		for range 2 {
			<-runs
		}
	}()
	waitConnected(c1)
	transfer(t, src.Addr("SSH").String(), 256<<10)
	before := describe(c1)

	c1.kill9(t)
	c2 := startChild(t, childConfig{StateDir: state, APIAddr: strings.TrimPrefix(c1.api, "http://"), DataAddr: c1.data, MQTTAddr: c1.mqtt})
	after := describe(c2)
	for _, k := range []string{"tunnelId", "tunnelArn", "status", "description", "destinationConfig", "timeoutConfig", "tags", "createdAt"} {
		if !reflect.DeepEqual(before[k], after[k]) {
			t.Errorf("%s: before the kill %v, after the restart %v", k, before[k], after[k])
		}
	}
	// Same createdAt and lifetime: the same expiry, so the same remaining lifetime.
	expires := time.Unix(int64(after["createdAt"].(float64)), 0).Add(30 * time.Minute)
	if left := time.Until(expires); left <= 25*time.Minute || left > 30*time.Minute {
		t.Errorf("remaining lifetime %s after the restart", left)
	}
	waitConnected(c2)
	transfer(t, src.Addr("SSH").String(), 256<<10)

	// The destination token stays used: without its client token it is refused.
	d := websocket.Dialer{TLSClientConfig: tlsConfig(pool), Subprotocols: []string{"aws.iot.securetunneling-3.0"}}
	_, resp, err := d.Dial("wss://"+c2.data+"/tunnel?local-proxy-mode=destination",
		http.Header{"access-token": {open["destinationAccessToken"].(string)}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("reuse without the client token after the restart: %v %v", resp, err)
	}
	resp.Body.Close()
}

func tlsConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
