package greengrass

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
	"github.com/tunnel-agent/tunnel-agent/platform/greengrass/fakenucleus"
)

// e2eWorld is the emulator (the AWS side), a local echo service, and the test
// nucleus (fakenucleus) on its own MQTT connection to the emulator's broker,
// enforcing a recipe's accessControl: what the emulator's OpenTunnel publishes
// reaches the agent the way it does on a Greengrass core, through IPC.
type e2eWorld struct {
	emu     *emulator.Emulator
	nucleus *fakenucleus.Nucleus
	watcher *fakenucleus.PahoMQTT // another client on the broker
	echo    string
	logs    *tunneltest.SyncBuffer
	secrets []string
}

// nucleusSetup says which component the agent runs as.
type nucleusSetup struct {
	recipe      string // "" for a component without accessControl
	interpolate bool   // interpolateComponentConfiguration
}

func newE2EWorld(t *testing.T, setup nucleusSetup) *e2eWorld {
	t.Helper()
	// BrokerAllowAll: a Greengrass core's policy allows more than the
	// minimal per-thing policy the emulator applies by default, and the
	// watcher subscribes to other topics.
	emu, err := emulator.New(emulator.Config{StateDir: t.TempDir(), BrokerAllowAll: true})
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
	w := &e2eWorld{emu: emu, echo: tunneltest.Echo(t), logs: &tunneltest.SyncBuffer{}, secrets: []string{testToken}}
	w.startNucleus(t, setup)
	w.watcher = w.dialMQTT(t, "watcher")
	t.Cleanup(w.watcher.Close)
	t.Cleanup(func() {
		for _, s := range w.secrets {
			if strings.Contains(w.logs.String(), s) {
				t.Errorf("a secret appears in the agent log")
			}
		}
	})
	return w
}

// dialMQTT connects an MQTT client as thing (mutual TLS), retrying while the
// broker starts.
func (w *e2eWorld) dialMQTT(t *testing.T, thing string) *fakenucleus.PahoMQTT {
	t.Helper()
	cert, key, err := w.emu.IssueDeviceCert(thing, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var m *fakenucleus.PahoMQTT
	if !tunneltest.Poll(20*time.Second, func() bool {
		m, err = fakenucleus.DialMQTT(fakenucleus.MQTTDial{Addr: w.emu.MQTTAddr(), CertFile: cert,
			KeyFile: key, CAFile: w.emu.CAFile(), ClientID: thing})
		return err == nil
	}) {
		t.Fatalf("mqtt client %s: %v", thing, err)
	}
	return m
}

// startNucleus runs the test nucleus with the core device's MQTT connection
// (client id = thing name, as the nucleus does).
func (w *e2eWorld) startNucleus(t *testing.T, setup nucleusSetup) {
	t.Helper()
	comp := fakenucleus.Component{Name: "io.github.tunnelagent.TunnelAgent"}
	if setup.recipe != "" {
		var err error
		if comp, err = fakenucleus.ComponentFromRecipe(setup.recipe); err != nil {
			t.Fatal(err)
		}
	}
	mq := w.dialMQTT(t, testThing)
	dir, err := os.MkdirTemp("", "gg") // Unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	w.nucleus, err = fakenucleus.New(fakenucleus.Config{SocketPath: filepath.Join(dir, "ipc.socket"),
		ThingName: testThing, MQTT: mq, InterpolateComponentConfiguration: setup.interpolate,
		Components: map[string]fakenucleus.Component{testToken: comp}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.nucleus.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("nucleus: %v", err)
		}
		mq.Close()
		_ = os.RemoveAll(dir)
	})
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
func (w *e2eWorld) startAgent(t *testing.T) (*agent.Agent, *Source, *agentRun) {
	t.Helper()
	cfg := config.Default()
	cfg.Services = map[string]string{"ECHO": w.echo}
	cfg.DataEndpoint, cfg.CAFile, cfg.StateDir = w.emu.DataEndpoint(), w.emu.CAFile(), t.TempDir()
	log := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src := NewSource(Config{SocketPath: w.nucleus.SocketPath(), AuthToken: testToken, ThingName: testThing,
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
	return a, src, run
}

// openTunnel calls the emulator's OpenTunnel and returns the source token.
func (w *e2eWorld) openTunnel(t *testing.T, services ...string) string {
	t.Helper()
	in := map[string]any{"destinationConfig": map[string]any{"thingName": testThing, "services": services}}
	var out struct{ SourceAccessToken, DestinationAccessToken string }
	if err := emulator.CallAPI(context.Background(), http.DefaultClient, w.emu.APIURL(), emulator.DefaultRegion, "OpenTunnel", in, &out); err != nil {
		t.Fatalf("OpenTunnel: %v", err)
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

// waitReady waits for the agent's first subscription.
func waitReady(t *testing.T, a *agent.Agent, run *agentRun) {
	t.Helper()
	select {
	case <-a.Ready():
	case <-run.done:
		t.Fatalf("agent stopped before it was ready: %v", run.err)
	case <-time.After(10 * time.Second):
		t.Fatal("agent never became ready")
	}
}

func TestEndToEndGreengrassIPC(t *testing.T) {
	w := newE2EWorld(t, nucleusSetup{recipe: recipePath})
	a, src, agentRun := w.startAgent(t)
	waitReady(t, a, agentRun)

	// OpenTunnel publishes on the broker; the nucleus' subscription carries it
	// through IPC to the agent, which connects as destination.
	tunnelSrc := w.sourceSession(t, w.openTunnel(t, "ECHO"))
	for i := range 3 { // several connections through the one tunnel
		if err := tunneltest.EchoEventually(tunnelSrc.Addr("ECHO").String(), 4096*(i+1)); err != nil {
			t.Fatalf("echo through the tunnel (connection %d): %v", i+1, err)
		}
	}

	// An audit event through PublishToIoTCore reaches the broker.
	got := make(chan []byte, 1)
	if err := w.watcher.Subscribe("tunnel-agent/+/events", 1, func(_ string, p []byte) { got <- p }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := src.Publish(ctx, "tunnel-agent/"+testThing+"/events", []byte(`{"event":"test"}`)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case p := <-got:
		if string(p) != `{"event":"test"}` {
			t.Fatalf("watcher got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the published event never reached the broker")
	}
	if err := src.Publish(ctx, Topic(testThing), []byte("x")); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Publish on the notify topic = %v, want ErrUnauthorized", err)
	}

	// The nucleus goes away: the agent exits with an error (non-zero exit, the
	// nucleus restarts the component).
	w.nucleus.DropConnections()
	if err := agentRun.wait(t, "the IPC socket was lost"); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("agent.Run = %v, want ErrConnectionLost", err)
	}
}

func TestEndToEndAccessControl(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup nucleusSetup
		ok    bool
	}{
		{"no accessControl", nucleusSetup{}, false},
		{"thingname recipe, interpolation on", nucleusSetup{recipe: recipeThingNamePath, interpolate: true}, true},
		{"thingname recipe, interpolation off", nucleusSetup{recipe: recipeThingNamePath}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newE2EWorld(t, tt.setup)
			a, _, agentRun := w.startAgent(t)
			if tt.ok {
				waitReady(t, a, agentRun)
				return
			}
			err := agentRun.wait(t, "the subscription was refused")
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("agent.Run = %v, want ErrUnauthorized", err)
			}
			for _, s := range []string{"accessControl", "aws.greengrass.ipc.mqttproxy",
				"aws.greengrass#SubscribeToIoTCore", "aws.greengrass#UnauthorizedError", "Not Authorized", RecipeTopicResource} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("agent error does not name %q: %v", s, err)
				}
			}
		})
	}
}
