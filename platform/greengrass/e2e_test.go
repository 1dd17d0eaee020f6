package greengrass

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// e2eWorld is the emulator (the AWS side), a local echo service, and the fake
// nucleus whose MQTT half is a real MQTT client on the emulator's broker: what
// the emulator's OpenTunnel publishes reaches the agent the way it does on a
// Greengrass core, through IPC.
type e2eWorld struct {
	emu     *emulator.Emulator
	nucleus *fakeNucleus
	mqttIn  chan []byte // notifications the nucleus' MQTT connection received
	echo    string
	logs    *tunneltest.SyncBuffer
	secrets []string
}

func newE2EWorld(t *testing.T) *e2eWorld {
	t.Helper()
	emu, err := emulator.New(emulator.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	emuDone := make(chan error, 1)
	go func() { emuDone <- emu.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-emuDone; err != nil {
			t.Errorf("emulator: %v", err)
		}
	})
	w := &e2eWorld{emu: emu, nucleus: newFakeNucleus(t), mqttIn: make(chan []byte, 8),
		echo: tunneltest.Echo(t), logs: &tunneltest.SyncBuffer{}, secrets: []string{testToken}}
	w.startNucleusMQTT(t)
	t.Cleanup(func() {
		for _, s := range w.secrets {
			if strings.Contains(w.logs.String(), s) {
				t.Errorf("a secret appears in the agent log")
			}
		}
	})
	return w
}

// startNucleusMQTT connects the nucleus' MQTT client (mutual TLS, client id =
// thing name, as the nucleus does) and waits until it is subscribed.
func (w *e2eWorld) startNucleusMQTT(t *testing.T) {
	t.Helper()
	cert, key, err := w.emu.IssueDeviceCert(testThing, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, err := net.SplitHostPort(w.emu.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	src, err := notify.NewMQTTSource(notify.MQTTConfig{Endpoint: host, Port: port, ThingName: testThing,
		CertFile: cert, KeyFile: key, RootCAFile: w.emu.CAFile(), MaxReconnectInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}, 4), make(chan struct{})
	go func() {
		defer close(done)
		_ = src.Run(ctx, func(p []byte) bool { w.mqttIn <- p; return true }, func() { ready <- struct{}{} })
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("the nucleus' MQTT client never subscribed")
	}
}

// agentRun is agent.Run in the background: err is set before done closes.
type agentRun struct {
	done chan struct{}
	err  error
}

// wait returns agent.Run's result, failing the test if it does not return.
func (r *agentRun) wait(t *testing.T, why string) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("agent kept running after %s", why)
		return nil
	}
}

// startAgent runs the real agent with the Greengrass source.
func (w *e2eWorld) startAgent(t *testing.T) (*agent.Agent, *agentRun) {
	t.Helper()
	cfg := config.Default()
	cfg.Services = map[string]string{"ECHO": w.echo}
	cfg.DataEndpoint, cfg.CAFile, cfg.StateDir = w.emu.DataEndpoint(), w.emu.CAFile(), t.TempDir()
	log := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src := NewSource(Config{SocketPath: w.nucleus.path, AuthToken: testToken, ThingName: testThing,
		Logger: log})
	a, err := agent.New(cfg, src, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &agentRun{done: make(chan struct{})}
	go func() { defer close(run.done); run.err = a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-run.done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	return a, run
}

// openTunnel calls the emulator's OpenTunnel and returns the source token.
func (w *e2eWorld) openTunnel(t *testing.T, services ...string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"destinationConfig": map[string]any{
		"thingName": testThing, "services": services}})
	req, _ := http.NewRequest(http.MethodPost, w.emu.APIURL()+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "IoTSecuredTunneling.OpenTunnel")
	if err := emulator.SignRequest(req, body, "AKIDGGE2E", "gg-e2e-secret", emulator.DefaultRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ SourceAccessToken, DestinationAccessToken string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("OpenTunnel: HTTP %d, %v", resp.StatusCode, err)
	}
	w.secrets = append(w.secrets, out.SourceAccessToken, out.DestinationAccessToken)
	return out.SourceAccessToken
}

// sourceSession runs the operator's side of the tunnel.
func (w *e2eWorld) sourceSession(t *testing.T, token string) *tunnel.Session {
	t.Helper()
	s, err := tunnel.New(tunnel.Config{Mode: tunnel.ModeSource, Endpoint: w.emu.DataEndpoint(), AccessToken: token,
		RootCAs: w.emu.CAPool(), Services: map[string]string{"ECHO": "127.0.0.1:0"}, ReconnectMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func TestEndToEndGreengrassIPC(t *testing.T) {
	w := newE2EWorld(t)
	a, agentRun := w.startAgent(t)
	nc := w.nucleus.accept(t)
	nc.connect(testToken, true)
	stream := nc.expectSubscribe(testTopic)
	nc.respond(stream)
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("agent never became ready")
	}

	srcToken := w.openTunnel(t, "ECHO")
	var notification []byte
	select {
	case notification = <-w.mqttIn:
	case <-time.After(10 * time.Second):
		t.Fatal("the emulator's notification never reached the nucleus' MQTT client")
	}
	nc.ping("keepalive")
	nc.push(stream, testTopic, notification)

	src := w.sourceSession(t, srcToken)
	for i := range 3 { // several connections through the one tunnel
		if err := tunneltest.EchoEventually(src.Addr("ECHO").String(), 4096*(i+1)); err != nil {
			t.Fatalf("echo through the tunnel (connection %d): %v", i+1, err)
		}
	}

	// The nucleus goes away: the agent exits with an error (non-zero exit, the
	// nucleus restarts the component).
	_ = nc.c.Close()
	if err := agentRun.wait(t, "the IPC socket was lost"); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("agent.Run = %v, want ErrConnectionLost", err)
	}
}

func TestEndToEndUnauthorized(t *testing.T) {
	w := newE2EWorld(t)
	_, agentRun := w.startAgent(t)
	nc := w.nucleus.accept(t)
	nc.connect(testToken, true)
	nc.fail(nc.expectSubscribe(testTopic), modelUnauthorized,
		"Authorization failed with error Principal io.github.tunnelagent.TunnelAgent is not authorized to perform "+
			"aws.greengrass.ipc.mqttproxy:aws.greengrass#SubscribeToIoTCore on resource "+testTopic)
	err := agentRun.wait(t, "the subscription was refused")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("agent.Run = %v, want ErrUnauthorized", err)
	}
	for _, s := range []string{"accessControl", "aws.greengrass.ipc.mqttproxy",
		"aws.greengrass#SubscribeToIoTCore", RecipeTopicResource} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("agent error does not name %q: %v", s, err)
		}
	}
}
