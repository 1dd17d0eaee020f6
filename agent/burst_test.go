package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// Issue 20 item 4: a burst of notifications through a real broker is not
// lost when the agent is slower than the burst. Junk ahead of them is
// dropped before it takes a queue slot; a valid notification that finds
// no room within takeWait stays unacknowledged, the source reconnects and
// the broker delivers it again. (Before, as reported: 300 valid notifications gave 235
// "notification dropped: agent busy (queue full)", acknowledged and gone.)
func TestNotificationBurstNotLost(t *testing.T) {
	old := takeWait
	takeWait = 20 * time.Millisecond
	t.Cleanup(func() { takeWait = old })
	const valid, junk = 150, 150

	p := notifytest.NewPKI(t, "pi-1")
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	logs := &logBuf{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := notify.NewMQTTSource(notify.MQTTConfig{Endpoint: "localhost", Port: b.Port(), ThingName: "pi-1",
		CertFile: p.ClientCertFile, KeyFile: p.ClientKeyFile, RootCAFile: p.CAFile, Logger: log,
		MinReconnectInterval: 10 * time.Millisecond, MaxReconnectInterval: 100 * time.Millisecond, RedeliverAfter: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.ThingName, cfg.StateDir, cfg.MaxTunnels = "pi-1", t.TempDir(), 1000
	cfg.Services = map[string]string{"SSH": "127.0.0.1:22"}
	a, err := New(cfg, src, log)
	if err != nil {
		t.Fatal(err)
	}
	// Each tunnel costs the loop a few ms (its state file is fsynced too):
	// slower than the broker delivers.
	a.newSession = func(c tunnel.Config) (runner, error) {
		time.Sleep(3 * time.Millisecond)
		return &fakeSession{cfg: c, result: make(chan error, 1)}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-a.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("never subscribed")
	}
	for i := range junk {
		b.Publish(t, notify.Topic("pi-1"), []byte(fmt.Sprintf(`{"clientMode":"source","n":%d}`, i)))
	}
	for i := range valid {
		b.Publish(t, notify.Topic("pi-1"), []byte(fmt.Sprintf(
			`{"clientAccessToken":"AQGAAXh0b2tlbi0%04d","clientMode":"destination","region":"us-east-1","services":["SSH"]}`, i)))
	}
	if !tunneltest.Poll(60*time.Second, func() bool { return strings.Count(logs.String(), `"event":"tunnel.opened"`) >= valid }) {
		t.Fatalf("%d of %d tunnels opened", strings.Count(logs.String(), `"event":"tunnel.opened"`), valid)
	}
	l := logs.String()
	opened, deferred := strings.Count(l, `"event":"tunnel.opened"`), strings.Count(l, `"event":"notification.deferred"`)
	dropped, suppressed := strings.Count(l, `"event":"notification.dropped"`), strings.Count(l, `"suppressed"`)
	t.Logf("%d valid + %d junk notifications: %d tunnels opened, %d deferred and redelivered, %d junk lines logged (rest rate-limited: %d summary lines), %d reconnects for redelivery",
		valid, junk, opened, deferred, dropped, suppressed, strings.Count(l, "redelivers"))
	if opened != valid {
		t.Errorf("%d tunnels opened, want %d", opened, valid)
	}
	if dropped > dropWarnBurst {
		t.Errorf("%d junk lines logged, more than %d a minute", dropped, dropWarnBurst)
	}
}
