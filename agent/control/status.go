package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
)

// Status is what the control socket answers and `tunnel-agent status
// --json` prints. It never holds a token.
type Status struct {
	Version    string    `json:"version"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
	Thing      string    `json:"thing"`
	MaxTunnels int       `json:"max_tunnels"`
	// Source is the notification source (MQTT or Greengrass IPC).
	Source  *notify.SourceState  `json:"source,omitempty"`
	Tunnels []agent.TunnelStatus `json:"tunnels"`
	// Ended are the last tunnels that ended, newest first.
	Ended []agent.EndedTunnel `json:"ended"`
	// Traffic is per service, all tunnels since the agent started.
	Traffic []tunnel.ServiceStats `json:"traffic"`
	// Notifications counts notifications by result: accepted, duplicate,
	// refused_max_tunnels, refused_services, malformed, deferred_busy.
	Notifications map[string]uint64 `json:"notifications"`
	Audit         *audit.QueueStats `json:"audit,omitempty"`
	// BadRequests counts malformed requests on the control socket.
	BadRequests uint64 `json:"bad_requests"`
}

// ErrNotRunning: nothing answers on the control socket.
var ErrNotRunning = errors.New("tunnel-agent is not running")

// maxAnswer bounds what Query reads.
const maxAnswer = 16 << 20

// ErrBusy: the agent serves too many control clients at once.
var ErrBusy = errors.New("the agent is busy with other status requests; retry")

// Query asks the agent behind the socket at path for its status, trying
// up to 3 times while the agent is busy.
func Query(ctx context.Context, path string) (Status, error) {
	for attempt := 1; ; attempt++ {
		st, err := query(ctx, path)
		if !errors.Is(err, ErrBusy) || attempt == 3 {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, err
		case <-time.After(time.Duration(rand.N(100*attempt)+1) * time.Millisecond):
		}
	}
}

func query(ctx context.Context, path string) (Status, error) {
	var st Status
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED):
		return st, fmt.Errorf("%w (no control socket at %s; start it with `systemctl start tunnel-agent`, or pass --socket)", ErrNotRunning, path)
	case errors.Is(err, os.ErrPermission):
		return st, fmt.Errorf("cannot open the control socket %s: permission denied: run as root or as a member of the tunnel-agent group", path)
	case err != nil:
		return st, fmt.Errorf("connect to the control socket %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, RequestStatus+"\n"); err != nil {
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			return st, ErrBusy
		}
		return st, fmt.Errorf("send the status request: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(c, maxAnswer))
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || (err == nil && len(b) == 0) {
		// Closed unanswered: the agent is flooded. Depending on when it
		// closed, the socket reports a reset or a plain end of stream.
		return st, ErrBusy
	}
	if err != nil {
		return st, fmt.Errorf("read the status: %w", err)
	}
	var e errorDoc
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		if strings.HasPrefix(e.Error, busyText) {
			return st, ErrBusy
		}
		return st, fmt.Errorf("the agent answered: %s", e.Error)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("the agent's answer is not a status document: %w", err)
	}
	return st, nil
}

// WriteText prints the status for a person.
func WriteText(w io.Writer, st *Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	p("tunnel-agent %s (pid %d), thing %s, up %s", st.Version, st.PID, st.Thing, ago(now, st.Started))
	if s := st.Source; s != nil {
		where := s.Broker
		if where == "" {
			where = "Greengrass IPC"
		}
		p("source: %s %s, %s since %s (%s ago), %d connect(s)", s.Kind, where, s.State, clock(s.Since), ago(now, s.Since), s.Connects)
		p("  topic %s", s.Topic)
		if s.LastError != "" {
			p("  last error %s ago: %s", ago(now, s.LastErrorAt), s.LastError)
		}
	}
	p("  %s", counts(st.Notifications))
	if a := st.Audit; a != nil {
		p("audit: topic %s, %d queued, %d published, %d dropped", a.Topic, a.Queued, a.Published, a.Dropped)
		if a.LastError != "" {
			p("  last error %s ago: %s", ago(now, a.LastErrorAt), a.LastError)
		}
	}
	p("tunnels: %d live (max %d)", len(st.Tunnels), st.MaxTunnels)
	for _, t := range st.Tunnels {
		writeTunnel(p, &t, now)
	}
	if len(st.Ended) > 0 {
		p("ended (newest first):")
		for _, e := range st.Ended {
			line := fmt.Sprintf("  %s\t%s\tended %s ago after %s: %s", e.ID, strings.Join(e.Services, ","), ago(now, e.Ended), e.Ended.Sub(e.Opened).Round(time.Second), e.Reason)
			if e.Err != "" {
				line += " (" + e.Err + ")"
			}
			p("%s", line)
		}
	}
	return tw.Flush()
}

func writeTunnel(p func(string, ...any), t *agent.TunnelStatus, now time.Time) {
	state := t.State
	if !t.ConnectedSince.IsZero() {
		state += " " + ago(now, t.ConnectedSince)
	}
	extra := ""
	if t.LifetimeLeft != "" {
		extra = ", local lifetime left " + t.LifetimeLeft
	}
	p("  %s\t%s\t%s, protocol %s, channel %s, reconnects %d%s", t.ID, strings.Join(t.Services, ","), state,
		orDash(t.Protocol), orDash(t.ChannelID), t.Reconnects, extra)
	for _, s := range t.Traffic {
		p("    %s\t%d active\t%d opened\tin %s\tout %s", s.Service, s.Active, s.Opened, bytesText(s.BytesIn), bytesText(s.BytesOut))
	}
	if t.LastError != "" {
		p("    last error: %s", t.LastError)
	}
}

func counts(m map[string]uint64) string {
	var parts []string
	for _, k := range notificationResults {
		parts = append(parts, fmt.Sprintf("%s %d", strings.ReplaceAll(k, "_", " "), m[k]))
	}
	return "notifications: " + strings.Join(parts, ", ")
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String()
}

func clock(t time.Time) string { return t.Local().Format(time.DateTime) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
