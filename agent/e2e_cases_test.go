package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// Two services of one tunnel, several simultaneous connections each, then
// CloseTunnel ends the tunnel and removes its state.
func TestE2ETwoServicesAndClose(t *testing.T) {
	w := newWorld(t, nil)
	w.startAgent()
	tun := w.open("ECHO", "HTTP")
	src := w.source(tun.srcToken, "ECHO", "HTTP")
	echoAddr, httpAddr := src.Addr("ECHO").String(), src.Addr("HTTP").String()
	w.logs.waitLog(t, `"event":"tunnel.connected"`)
	retryEcho(t, echoAddr)

	var g errgroup.Group
	for i := range 4 {
		g.Go(func() error { return tunneltest.EchoCheck(echoAddr, 64<<10+i*1000) })
		g.Go(func() error {
			body, err := httpGet(httpAddr)
			if err == nil && body != "hello from /hello" {
				err = fmt.Errorf("http body %q", body)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	w.logs.waitLog(t, `"event":"stream.ended"`, `"service":"HTTP"`, `"bytes_in":`)
	if len(stateFiles(t, w.cfg.StateDir)) != 1 {
		t.Fatal("no state file for the open tunnel")
	}

	w.api("CloseTunnel", map[string]any{"tunnelId": tun.id})
	w.logs.waitLog(t, `"reason":"closed by service"`)
	if files := stateFiles(t, w.cfg.StateDir); len(files) != 0 {
		t.Errorf("state files left: %v", files)
	}
}

// A rotated destination token replaces the session; the old one is refused
// and cleaned up, and traffic flows through the new one.
func TestE2ERotation(t *testing.T) {
	w := newWorld(t, nil)
	w.startAgent()
	tun := w.open("ECHO")
	src := w.source(tun.srcToken, "ECHO")
	retryEcho(t, src.Addr("ECHO").String())

	w.api("RotateTunnelAccessToken", map[string]any{"tunnelId": tun.id, "clientMode": "DESTINATION",
		"destinationConfig": map[string]any{"thingName": thingName, "services": []string{"ECHO"}}})
	// The emulator replaces the old destination connection; the old
	// session ends (closed, or refused when it retries the revoked token).
	w.logs.waitLog(t, `"event":"tunnel.closed"`)
	if n := strings.Count(w.logs.String(), `"event":"tunnel.opened"`); n != 2 {
		t.Errorf("%d tunnels opened, want 2", n)
	}
	retryEcho(t, src.Addr("ECHO").String())
	if files := stateFiles(t, w.cfg.StateDir); len(files) != 1 {
		t.Errorf("state files %v", files)
	}
}

// The service expires the tunnel (emulator clock moved past the lifetime).
func TestE2EExpiry(t *testing.T) {
	w := newWorld(t, nil)
	w.startAgent()
	tun := w.open("ECHO")
	src := w.source(tun.srcToken, "ECHO")
	retryEcho(t, src.Addr("ECHO").String())
	w.clock.Store(int64(13 * time.Hour))
	w.logs.waitLog(t, `"event":"tunnel.closed"`)
	if files := stateFiles(t, w.cfg.StateDir); len(files) != 0 {
		t.Errorf("state files %v", files)
	}
}

// The agent restarts: the open tunnel resumes with the same tokens (no
// rotation), and a tunnel opened while it was down arrives on reconnect.
func TestE2ERestartResumesAndOfflineNotification(t *testing.T) {
	w := newWorld(t, nil)
	ag := w.startAgent()
	tun := w.open("ECHO")
	src := w.source(tun.srcToken, "ECHO")
	retryEcho(t, src.Addr("ECHO").String())
	ag.stop(t)
	files := stateFiles(t, w.cfg.StateDir)
	if len(files) != 1 {
		t.Fatal("state not kept across the restart")
	}
	var rec record
	if b, err := os.ReadFile(files[0]); err != nil || json.Unmarshal(b, &rec) != nil || rec.ClientToken == "" {
		t.Fatalf("state file unreadable: %v", err)
	}
	w.addSecret(rec.AccessToken, rec.ClientToken) // must not appear in logs either

	tun2 := w.open("HTTP") // published while the agent is offline
	src2 := w.source(tun2.srcToken, "HTTP")

	w.startAgent()
	w.logs.waitLog(t, `"resumed":true`)
	retryEcho(t, src.Addr("ECHO").String())
	var body string
	var err error
	if !tunneltest.Poll(20*time.Second, func() bool {
		body, err = httpGet(src2.Addr("HTTP").String())
		return err == nil && body == "hello from /hello"
	}) {
		t.Fatalf("offline-published tunnel never served: %v %q", err, body)
	}
	if strings.Contains(w.logs.String(), "rejected by service") {
		t.Error("resume needed a new token")
	}
}

// Malformed notifications change nothing; a valid one afterwards works.
func TestE2EMalformedNotifications(t *testing.T) {
	w := newWorld(t, nil)
	w.startAgent()
	bad := notifytest.BadPayloads()
	var payloads [][]byte
	for _, p := range bad {
		payloads = append(payloads, []byte(p))
	}
	w.publishRaw(payloads...)
	tun := w.open("ECHO")
	src := w.source(tun.srcToken, "ECHO")
	retryEcho(t, src.Addr("ECHO").String())
	logs := w.logs.String()
	if n, want := strings.Count(logs, `"event":"notification.dropped"`), min(len(bad), dropWarnBurst); n != want {
		t.Errorf("%d drop lines for %d bad notifications, want %d (one each, up to the rate limit)", n, len(bad), want)
	}
	if n := strings.Count(logs, `"event":"tunnel.opened"`); n != 1 {
		t.Errorf("%d tunnels opened, want 1", n)
	}
	if len(stateFiles(t, w.cfg.StateDir)) != 1 {
		t.Error("state files changed")
	}
}

// A tunnel asking for a service outside the allow-list still serves the
// mapped one; connections to the other are reset and the log says how to
// allow it.
func TestE2EUnmappedService(t *testing.T) {
	w := newWorld(t, nil)
	w.startAgent()
	tun := w.open("ECHO", "VNC")
	src := w.source(tun.srcToken, "ECHO", "VNC")
	retryEcho(t, src.Addr("ECHO").String())
	w.logs.waitLog(t, `"event":"service.refused"`, `"service":"VNC"`, "add `VNC:")
	if err := tunneltest.EchoCheck(src.Addr("VNC").String(), 10); err == nil {
		t.Fatal("data went through a service that is not in the services map")
	}
	retryEcho(t, src.Addr("ECHO").String())
}

// max_tunnel_lifetime ends a tunnel locally even though the service keeps it.
func TestE2ELocalLifetime(t *testing.T) {
	w := newWorld(t, nil)
	w.cfg.MaxTunnelLifetime = 1500 * time.Millisecond
	w.startAgent()
	tun := w.open("ECHO")
	src := w.source(tun.srcToken, "ECHO")
	retryEcho(t, src.Addr("ECHO").String())
	w.logs.waitLog(t, `"reason":"expired"`)
	if files := stateFiles(t, w.cfg.StateDir); len(files) != 0 {
		t.Errorf("state files %v", files)
	}
	// The service sees the destination gone.
	var st map[string]any
	if !tunneltest.Poll(10*time.Second, func() bool {
		d := w.api("DescribeTunnel", map[string]any{"tunnelId": tun.id})
		tn, _ := d["tunnel"].(map[string]any)
		st, _ = tn["destinationConnectionState"].(map[string]any)
		return st["status"] == "DISCONNECTED"
	}) {
		t.Fatalf("destination still connected after its local lifetime: %v", st)
	}
}
