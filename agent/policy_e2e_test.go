package agent

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// TestE2EBrokerPolicy runs the agent with pi-1's certificate against the
// emulator's embedded broker, configured for the thing pi-2. The broker's
// default per-thing policy (that of AWS IoT Core) refuses the subscription
// to pi-2's notify topic (client id pi-1), or the connection itself
// (client id pi-2), and the agent logs the matching policy hint; with the
// broker's relaxing switch the same agent subscribes and serves a tunnel
// opened for pi-2.
func TestE2EBrokerPolicy(t *testing.T) {
	for _, tc := range []struct {
		name, clientID string
		allowAll       bool
		hint           string // "" subscribes
	}{
		{"subscribe refused", thingName, false, "iot:Subscribe on arn:aws:iot:<region>:<account>:topicfilter/$aws/things/pi-2/tunnels/notify"},
		{"connect refused", "pi-2", false, "policy does not allow iot:Connect on client/pi-2"},
		{"allow-all", thingName, true, ""},
		{"allow-all other client id", "pi-2", true, ""},
	} {
		allowAll := tc.allowAll
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, func(c *emulator.Config) { c.BrokerAllowAll = allowAll })
			cfg := w.cfg
			cfg.ThingName, cfg.ClientID = "pi-2", tc.clientID // pi-1's certificate
			cfg.Endpoint, cfg.Port, cfg.RootCA = w.mqttHost, w.mqttPort, w.rootCA
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			src, err := notify.NewMQTTSource(notify.MQTTConfig{Endpoint: cfg.Endpoint, Port: cfg.Port, ThingName: cfg.ThingName,
				ClientID: cfg.ClientID, CertFile: cfg.Cert, KeyFile: cfg.Key, RootCAFile: cfg.RootCA, Logger: log,
				MaxReconnectInterval: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			a, err := New(cfg, src, log)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			defer func() {
				cancel()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Error("agent did not stop within 5 s")
				}
			}()
			if hint := tc.hint; hint != "" {
				// The hint is in the log, or in the error Run ends with
				// (which tunnel-agent's main logs).
				deadline := time.After(20 * time.Second)
				for !strings.Contains(w.logs.String(), hint) {
					select {
					case err := <-done:
						done <- err // for the deferred stop
						if err == nil || !strings.Contains(err.Error(), hint) {
							t.Fatalf("agent ended with %v, want the policy hint %q; log:\n%s", err, hint, w.logs.String())
						}
						return
					case <-deadline:
						t.Fatalf("the agent did not log the policy hint %q; log:\n%s", hint, w.logs.String())
					case <-time.After(20 * time.Millisecond):
					}
				}
				return
			}
			select {
			case <-a.Ready():
			case <-time.After(20 * time.Second):
				t.Fatalf("agent never subscribed; log:\n%s", w.logs.String())
			}
			out := w.api("OpenTunnel", map[string]any{"destinationConfig": map[string]any{"thingName": "pi-2", "services": []string{"ECHO"}}})
			id := out["tunnelId"].(string)
			if !tunneltest.Poll(20*time.Second, func() bool {
				d := w.api("DescribeTunnel", map[string]any{"tunnelId": id})
				return d["tunnel"].(map[string]any)["destinationConnectionState"].(map[string]any)["status"] == "CONNECTED"
			}) {
				t.Fatalf("the agent did not connect to pi-2's tunnel; log:\n%s", w.logs.String())
			}
		})
	}
}
