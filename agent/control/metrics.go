package control

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
)

// Metric names; every one starts with this prefix.
const prefix = "tunnel_agent_"

// notificationResults are the label values of notifications_total, in the
// order status prints them.
var notificationResults = []string{"accepted", "duplicate", "refused_max_tunnels", "refused_services", "malformed", "deferred_busy"}

// metricsBook holds the counters that come from audit events. The values
// that come from the agent's snapshot (bytes, connections, tunnels) are
// read when scraped.
type metricsBook struct {
	set  *metrics.Set
	bad  atomic.Uint64
	note map[string]*metrics.Counter
}

func newMetricsBook() *metricsBook {
	metrics.ExposeMetadata(true)
	b := &metricsBook{set: metrics.NewSet(), note: map[string]*metrics.Counter{}}
	for _, r := range notificationResults {
		b.note[r] = b.set.NewCounter(name("notifications_total", "result", r))
	}
	b.set.NewCounter(prefix + "dataplane_reconnects_total")
	return b
}

// name builds a metric name with escaped label values.
func name(base string, labels ...string) string {
	var sb strings.Builder
	sb.WriteString(prefix + base)
	for i := 0; i+1 < len(labels); i += 2 {
		if i == 0 {
			sb.WriteByte('{')
		} else {
			sb.WriteByte(',')
		}
		sb.WriteString(labels[i] + "=" + strconv.Quote(labels[i+1]))
	}
	if len(labels) > 1 {
		sb.WriteByte('}')
	}
	return sb.String()
}

func (b *metricsBook) inc(base string, labels ...string) {
	b.set.GetOrCreateCounter(name(base, labels...)).Inc()
}

// observe counts one audit event. Label values are bounded: event names,
// the agent's fixed reasons, HTTP statuses.
func (b *metricsBook) observe(e *audit.Event) {
	b.inc("events_total", "event", e.Event)
	switch e.Event {
	case audit.TunnelOpened:
		b.inc("tunnels_opened_total", "resumed", strconv.FormatBool(e.Resumed))
		if !e.Resumed {
			b.note["accepted"].Inc()
		}
	case audit.TunnelClosed:
		b.inc("tunnels_ended_total", "reason", e.Reason)
		if e.Status != 0 {
			b.inc("dataplane_handshake_refusals_total", "status", strconv.Itoa(e.Status))
		}
	case audit.TunnelRefused:
		if e.Reason == audit.ReasonMaxTunnels {
			b.note["refused_max_tunnels"].Inc()
		} else {
			b.note["refused_services"].Inc()
		}
	case audit.NotificationDup:
		b.note["duplicate"].Inc()
	case audit.NotificationDropped, audit.NotificationDroppedQuiet:
		b.note["malformed"].Inc()
	case audit.NotificationDeferred:
		b.note["deferred_busy"].Inc()
	case audit.TunnelReconnecting:
		b.inc("dataplane_reconnects_total")
	}
}

func (b *metricsBook) badRequest() { b.bad.Add(1) }

func (b *metricsBook) notifications() map[string]uint64 {
	m := make(map[string]uint64, len(b.note))
	for k, c := range b.note {
		m[k] = c.Get()
	}
	return m
}

// writeMetrics writes the whole exposition: event counters, the
// snapshot's values, then the process and Go runtime metrics.
func (s *Server) writeMetrics(w io.Writer) {
	s.m.set.WritePrometheus(w)
	st := s.Status()
	gauge(w, "tunnels_active", uint64(len(st.Tunnels)))
	family(w, "connections_active", "gauge")
	for _, t := range st.Traffic {
		fmt.Fprintf(w, "%s %d\n", name("connections_active", "service", t.Service), t.Active)
	}
	family(w, "connections_opened_total", "counter")
	for _, t := range st.Traffic {
		fmt.Fprintf(w, "%s %d\n", name("connections_opened_total", "service", t.Service), t.Opened)
	}
	family(w, "bytes_total", "counter")
	for _, t := range st.Traffic {
		fmt.Fprintf(w, "%s %d\n", name("bytes_total", "service", t.Service, "direction", "in"), t.BytesIn)
		fmt.Fprintf(w, "%s %d\n", name("bytes_total", "service", t.Service, "direction", "out"), t.BytesOut)
	}
	counter(w, "control_bad_requests_total", st.BadRequests)
	if src := st.Source; src != nil {
		writeSource(w, src)
	}
	if a := st.Audit; a != nil {
		gauge(w, "audit_queued", uint64(a.Queued))
		counter(w, "audit_published_total", a.Published)
		counter(w, "audit_dropped_total", a.Dropped)
		counter(w, "audit_publish_failures_total", a.Failures)
	}
	metrics.WriteProcessMetrics(w)
}

func writeSource(w io.Writer, src *notify.SourceState) {
	up := uint64(0)
	if src.State == notify.StateConnected.String() || src.State == notify.StateSubscribed.String() {
		up = 1
	}
	gauge(w, "mqtt_connected", up)
	counter(w, "mqtt_connects_total", uint64(src.Connects))
	counter(w, "mqtt_reconnects_total", uint64(max(src.Connects-1, 0)))
}

func family(w io.Writer, base, typ string) {
	metrics.WriteMetadataIfNeeded(w, prefix+base, typ)
}

func gauge(w io.Writer, base string, v uint64)   { metrics.WriteGaugeUint64(w, prefix+base, v) }
func counter(w io.Writer, base string, v uint64) { metrics.WriteCounterUint64(w, prefix+base, v) }

// listenMetrics binds a loopback TCP address or, for unix:/path, a socket
// with mode 0660.
func listenMetrics(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return ln, nil
}

// serveMetrics serves GET /metrics until ctx ends. It answers one
// request per connection (HTTP/1.x, Connection: close), which is all a
// Prometheus scrape needs, without linking Go's HTTP server (about 700 KB
// of the linux/arm binary, with HTTP/2).
func (s *Server) serveMetrics(ctx context.Context, ln net.Listener) {
	serveConns(ctx, s.log, ln, MaxClients, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(s.timeout))
		status, body := s.metricsAnswer(c)
		_ = c.SetWriteDeadline(time.Now().Add(s.timeout))
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
			status, contentType(status), body.Len())
		_, _ = c.Write(append(buf.Bytes(), body.Bytes()...))
	}, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
}

func contentType(status string) string {
	if strings.HasPrefix(status, "200") {
		return "text/plain; version=0.0.4; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

// metricsAnswer reads one request head (at most maxHead bytes) and
// returns the status line and body.
func (s *Server) metricsAnswer(r io.Reader) (string, *bytes.Buffer) {
	body := &bytes.Buffer{}
	head, err := readHead(r)
	if err != nil {
		body.WriteString(err.Error() + "\n")
		return "400 Bad Request", body
	}
	method, rest, _ := strings.Cut(head, " ")
	target, proto, _ := strings.Cut(rest, " ")
	target, _, _ = strings.Cut(target, "?")
	switch {
	case !strings.HasPrefix(proto, "HTTP/1."):
		body.WriteString("HTTP/1.x only\n")
		return "400 Bad Request", body
	case target != "/metrics":
		body.WriteString("metrics are at /metrics\n")
		return "404 Not Found", body
	case method != "GET" && method != "HEAD":
		body.WriteString("use GET\n")
		return "405 Method Not Allowed", body
	}
	s.writeMetrics(body)
	if method == "HEAD" {
		body.Reset()
	}
	return "200 OK", body
}

// maxHead bounds a request's line and headers.
const maxHead = 8 << 10

// readHead reads up to the blank line that ends the headers and returns
// the request line.
func readHead(r io.Reader) (string, error) {
	buf := make([]byte, 0, 1024)
	tmp := make([]byte, 1024)
	for len(buf) <= maxHead {
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			line, _, _ := bytes.Cut(buf, []byte("\r\n"))
			return string(line), nil
		}
		n, err := r.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil && n == 0 {
			return "", fmt.Errorf("incomplete request: %w", err)
		}
	}
	return "", fmt.Errorf("request head longer than %d bytes", maxHead)
}
