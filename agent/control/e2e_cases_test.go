package control

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// Two tunnels with traffic: the control socket shows both with their
// bytes, the metrics agree, and a subscriber on the emulator's broker gets
// every audit event in order.
func TestE2EStatusMetricsAudit(t *testing.T) {
	r := newRig(t, rigOpts{})
	defer r.stop() // before the brokers go
	sub := subscribe(t, r.emu.MQTTPlainAddr())

	t1, t2 := r.open("ECHO", "DATA"), r.open("ECHO")
	id1, id2 := audit.TunnelID(t1.dst), audit.TunnelID(t2.dst)
	r.waitStatus("both tunnels connected", func(st Status) bool {
		a, b := tunnelByID(st, id1), tunnelByID(st, id2)
		return a != nil && b != nil && a.State == "connected" && b.State == "connected"
	})
	s1, s2 := r.source(t1.src, "ECHO", "DATA"), r.source(t2.src, "ECHO")
	e1, d1, e2 := dialEcho(t, s1.Addr("ECHO")), dialEcho(t, s1.Addr("DATA")), dialEcho(t, s2.Addr("ECHO"))
	e1.push(300_000)
	d1.push(70_001)
	e2.push(123_457)
	e2.push(1)

	// While the connections are open. Bytes from the tunnel are counted once
	// the local write returns, which can be just after the echo came back:
	// wait until both directions are counted.
	both := func(s tunnel.ServiceStats, n int64) bool { return s.BytesIn == n && s.BytesOut == n }
	st := r.waitStatus("bytes counted", func(st Status) bool {
		a, b := tunnelByID(st, id1), tunnelByID(st, id2)
		return both(traffic(a, "ECHO"), e1.sent) && both(traffic(a, "DATA"), d1.sent) && both(traffic(b, "ECHO"), e2.sent)
	})
	a, b := tunnelByID(st, id1), tunnelByID(st, id2)
	var text strings.Builder
	_ = WriteText(&text, &st, time.Now())
	js, _ := json.MarshalIndent(st, "", "  ")
	t.Logf("tunnel-agent status:\n%s\ntunnel-agent status --json:\n%s", text.String(), js)
	for _, c := range []struct {
		name string
		got  int64
		want int64
	}{
		{"tunnel 1 ECHO in", traffic(a, "ECHO").BytesIn, e1.sent}, {"tunnel 1 ECHO out", traffic(a, "ECHO").BytesOut, e1.sent},
		{"tunnel 1 DATA in", traffic(a, "DATA").BytesIn, d1.sent}, {"tunnel 1 DATA out", traffic(a, "DATA").BytesOut, d1.sent},
		{"tunnel 2 ECHO in", traffic(b, "ECHO").BytesIn, e2.sent}, {"tunnel 2 ECHO out", traffic(b, "ECHO").BytesOut, e2.sent},
	} {
		if d := c.got - c.want; d < -protocol.MaxPayload || d > protocol.MaxPayload {
			t.Errorf("%s: status says %d bytes, the test moved %d", c.name, c.got, c.want)
		}
	}
	if traffic(a, "ECHO").Active != 1 || traffic(a, "DATA").Active != 1 || traffic(b, "ECHO").Active != 1 {
		t.Errorf("active connections: %+v / %+v", a.Traffic, b.Traffic)
	}
	if a.Protocol != "3.0" || a.ChannelID == "" || a.Reconnects != 0 || a.ConnectedSince.IsZero() ||
		strings.Join(a.Services, ",") != "ECHO,DATA" || a.LifetimeLeft != "" {
		t.Errorf("tunnel 1 status: %+v", *a)
	}
	if st.Source == nil || st.Source.State != notify.StateSubscribed.String() || st.Source.Connects != 1 || st.Notifications["accepted"] != 2 {
		t.Errorf("source %+v, notifications %v", st.Source, st.Notifications)
	}

	// systemd's STATUS= gets the counts.
	// Like the metrics, it follows the audit events: wait for it.
	r.waitCounts([2]int{2, 3})

	// The metrics agree with the status.
	started := `tunnel_agent_events_total{event="stream.started"}`
	m := r.waitMetrics(started+" = 3", func(m map[string]float64) bool { return m[started] == 3 })
	if testing.Verbose() {
		for k, v := range m {
			if strings.HasPrefix(k, "tunnel_agent_") {
				t.Logf("metric %s %v", k, v)
			}
		}
	}
	for _, svc := range []string{"ECHO", "DATA"} {
		want := traffic(a, svc).BytesIn + traffic(b, svc).BytesIn
		for _, dir := range []string{"in", "out"} {
			k := fmt.Sprintf(`tunnel_agent_bytes_total{service=%q,direction=%q}`, svc, dir)
			if int64(m[k]) != want {
				t.Errorf("%s = %v, status says %d", k, m[k], want)
			}
		}
		if k := fmt.Sprintf(`tunnel_agent_connections_active{service=%q}`, svc); int(m[k]) != traffic(a, svc).Active+traffic(b, svc).Active {
			t.Errorf("%s = %v", k, m[k])
		}
	}
	for k, want := range map[string]float64{
		"tunnel_agent_tunnels_active":                           2,
		`tunnel_agent_tunnels_opened_total{resumed="false"}`:    2,
		`tunnel_agent_notifications_total{result="accepted"}`:   2,
		`tunnel_agent_notifications_total{result="malformed"}`:  0,
		`tunnel_agent_connections_opened_total{service="ECHO"}`: 2,
		"tunnel_agent_mqtt_connected":                           1,
		"tunnel_agent_mqtt_reconnects_total":                    0,
		`tunnel_agent_events_total{event="stream.started"}`:     3,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if m["process_resident_memory_bytes"] == 0 {
		t.Error("no process metrics")
	}

	// End it all: the totals stay, the ended tunnels have their reason.
	for _, c := range []*echoConn{e1, d1, e2} {
		c.c.Close()
	}
	r.close(t1.id)
	r.close(t2.id)
	st = r.waitStatus("both tunnels ended", func(st Status) bool { return len(st.Tunnels) == 0 && len(st.Ended) == 2 })
	r.waitCounts([2]int{0, 0})
	if st.Ended[0].Reason != "closed by service" || st.Ended[0].ChannelID == "" {
		t.Errorf("ended: %+v", st.Ended)
	}
	ended := `tunnel_agent_tunnels_ended_total{reason="closed by service"}`
	m = r.waitMetrics(ended+" = 2", func(m map[string]float64) bool { return m[ended] == 2 })
	if k := `tunnel_agent_bytes_total{service="ECHO",direction="out"}`; int64(m[k]) < e1.sent+e2.sent {
		t.Errorf("%s = %v after the tunnels ended, want at least %d", k, m[k], e1.sent+e2.sent)
	}

	// A token the data plane does not know: refused, and counted by status.
	publishNote(t, r.emu.MQTTPlainAddr(), "AQGAAXbogusbogusbogusbogusbogusbogus", "ECHO")
	st = r.waitStatus("bogus tunnel refused", func(st Status) bool { return len(st.Ended) == 3 })
	if e := st.Ended[0]; e.Reason != "rejected by service" || !strings.Contains(e.Err, "HTTP 4") {
		t.Errorf("bogus tunnel ended: %+v", e)
	}
	refusals := func(m map[string]float64) float64 {
		n := 0.0
		for k, v := range m {
			if strings.HasPrefix(k, `tunnel_agent_dataplane_handshake_refusals_total{status="4`) {
				n += v
			}
		}
		return n
	}
	// More than one would fail below; none in time fails here.
	m = r.waitMetrics("a handshake refusal", func(m map[string]float64) bool { return refusals(m) > 0 })
	if n := refusals(m); n != 1 {
		t.Errorf("handshake refusals counted: %v", n)
	}
	js, _ = json.Marshal(r.status())
	for _, tok := range []string{t1.dst, t1.src, t2.dst, t2.src, "AQGAAXbogus"} {
		if strings.Contains(string(js), tok) {
			t.Fatal("a token in the status")
		}
	}

	got := checkAudit(t, r, sub.events)
	counts := map[string]int{}
	for _, e := range got {
		counts[e.Event]++
		if strings.Contains(fmt.Sprint(e), t1.dst) || strings.Contains(fmt.Sprint(e), t2.dst) {
			t.Fatal("a token in an audit event")
		}
	}
	if counts[audit.TunnelOpened] != 3 || counts[audit.TunnelClosed] != 3 || counts[audit.StreamStarted] != 3 || counts[audit.StreamEnded] != 3 {
		t.Errorf("audit events by name: %v", counts)
	}
	t.Logf("%d audit events received in order: %v", len(got), counts)
	for _, tok := range []string{t1.dst, t1.src, t2.dst, t2.src} {
		if strings.Contains(r.logs.String(), tok) {
			t.Fatal("a token in the agent's log")
		}
	}
}

// Audit events raised while the broker is down are queued and arrive, in
// order, once it is back.
func TestE2EAuditSurvivesBrokerRestart(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	var first, second subscriber
	opts := notifytest.BrokerOptions{Setup: inlineSubscribe(t, &first)}
	b := notifytest.StartBroker(t, p, opts)
	// The agent's broker is the test's (it restarts); the test hands it the
	// notification the emulator would publish.
	r := newRig(t, rigOpts{
		mqttHost: "localhost", mqttPort: b.Port(), rootCA: p.CAFile, cert: p.ClientCertFile, key: p.ClientKeyFile,
		retryMin: 50 * time.Millisecond, maxBackoff: 500 * time.Millisecond,
	})
	defer r.stop() // before the brokers go
	tun := r.open("ECHO")
	note, _ := json.Marshal(map[string]any{"clientAccessToken": tun.dst, "clientMode": "destination",
		"region": "us-east-1", "services": []string{"ECHO"}})
	b.Publish(t, notify.Topic(thing), note)
	id := audit.TunnelID(tun.dst)
	r.waitStatus("tunnel connected", func(st Status) bool { t := tunnelByID(st, id); return t != nil && t.State == "connected" })
	src := r.source(tun.src, "ECHO")
	c := dialEcho(t, src.Addr("ECHO"))
	c.push(10_000)
	c.c.Close()
	r.waitStatus("first events published", func(st Status) bool { return st.Audit.Published >= 3 && st.Audit.Queued == 0 })

	// Broker down: the data plane goes on, its events wait in the queue.
	b.Close()
	r.waitStatus("mqtt down", func(st Status) bool { return st.Source.State != notify.StateSubscribed.String() })
	for range 3 {
		c := dialEcho(t, src.Addr("ECHO"))
		c.push(1000)
		c.c.Close()
	}
	r.close(tun.id)
	st := r.waitStatus("events queued while offline", func(st Status) bool {
		return len(st.Tunnels) == 0 && st.Audit.Queued >= 7 // 3 x stream started+ended, tunnel.closed
	})
	t.Logf("queued while the broker was down: %d (failures %d, last error %q)", st.Audit.Queued, st.Audit.Failures, st.Audit.LastError)

	opts.Addr, opts.Setup = b.Addr, inlineSubscribe(t, &second)
	notifytest.StartBroker(t, p, opts)
	got := checkAudit(t, r, func() []audit.Event { return append(first.events(), second.events()...) })
	if st := r.queue.Stats(); st.Dropped != 0 {
		t.Errorf("dropped %d", st.Dropped)
	}
	if last := got[len(got)-1]; last.Event != audit.TunnelClosed || last.Tunnel != id {
		t.Errorf("last event %+v, want tunnel.closed of %s", last, id)
	}
	t.Logf("%d events in order, %d of them after the restart", len(got), len(second.events()))
}

// inlineSubscribe subscribes to the audit topic inside the broker before
// it serves, so that nothing published after a restart is missed.
func inlineSubscribe(t *testing.T, s *subscriber) func(notifytest.Subscriber) {
	return func(sub notifytest.Subscriber) {
		if err := sub("tunnel-agent/+/events", func(payload []byte) { s.add(payload) }); err != nil {
			t.Fatal(err)
		}
	}
}

// On a Greengrass core the audit events go through IPC PublishToIoTCore,
// allowed by the shipped recipe, and reach the broker in order.
func TestE2EAuditThroughGreengrassIPC(t *testing.T) {
	r := newRig(t, rigOpts{greengrass: true})
	defer r.stop()
	sub := subscribe(t, r.emu.MQTTPlainAddr())
	tun := r.open("ECHO")
	id := audit.TunnelID(tun.dst)
	r.waitStatus("tunnel connected", func(st Status) bool { t := tunnelByID(st, id); return t != nil && t.State == "connected" })
	c := dialEcho(t, r.source(tun.src, "ECHO").Addr("ECHO"))
	c.push(5000)
	c.c.Close()
	r.close(tun.id)
	r.waitStatus("tunnel ended", func(st Status) bool { return len(st.Ended) == 1 })
	got := checkAudit(t, r, sub.events)
	t.Logf("%d audit events through PublishToIoTCore, in order", len(got))
}
