package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
)

// runner is the part of *tunnel.Session the agent uses; tests substitute it.
type runner interface {
	Run(ctx context.Context) error
}

type sessionFactory func(tunnel.Config) (runner, error)

func newTunnelSession(c tunnel.Config) (runner, error) { return tunnel.New(c) }

// sessionConfig builds the destination session's config for tunnel t
// from the agent's cfg, the limits shared by every session, the tunnel's
// logger and its event handler. The whole services map is the allow-list:
// the session resets streams for service ids outside it.
func sessionConfig(cfg *config.Config, limits *tunnel.Limits, t *tunnelEntry, log *slog.Logger, onEvent func(tunnel.Event)) tunnel.Config {
	c := tunnel.Config{
		Mode:             tunnel.ModeDestination,
		Endpoint:         cfg.DataEndpoint,
		Region:           t.rec.Region,
		AccessToken:      t.rec.AccessToken,
		ClientToken:      t.rec.ClientToken,
		CAFile:           cfg.CAFile,
		AllowPlaintext:   cfg.AllowPlaintextDataPlane,
		Services:         cfg.Services,
		ConnBufferSize:   int(cfg.ConnBuffer),
		ConnStallTimeout: cfg.ConnStallTimeout,
		MaxConnections:   cfg.MaxConnections,
		Limits:           limits,
		Logger:           log,
		OnEvent:          onEvent,
	}
	if cfg.HTTPSProxy != "" {
		if u, err := url.Parse(cfg.HTTPSProxy); err == nil {
			c.Proxy = http.ProxyURL(u)
		}
	}
	return c
}

// sessionEvents returns tunnel t's session event handler: it writes the
// stream audit events, keeps the tunnel's status current and marks t
// connected or not; it runs on the session's goroutines and never blocks.
// log is the tunnel's logger.
func (o *observations) sessionEvents(t *tunnelEntry, log *slog.Logger) func(tunnel.Event) {
	return func(e tunnel.Event) {
		ev := audit.Event{Tunnel: t.id, ChannelID: e.ChannelID, Service: e.Service, LocalAddr: e.LocalAddr,
			StreamID: e.StreamID, ConnID: e.ConnectionID, Reason: e.Reason}
		switch e.Kind {
		case tunnel.EventConnected:
			t.connected.Store(true)
			t.wasConnected.Store(true)
			o.connected(t.id, e)
			ev.Event, ev.Protocol = audit.TunnelConnected, protocolVersion(e.Subprotocol)
			// The session logs it at info, with the channel id.
			log.Debug("tunnel connected", attrEvent, ev.Event, attrChannel, e.ChannelID, attrProtocol, ev.Protocol)
		case tunnel.EventDisconnected:
			t.connected.Store(false)
			o.update(t.id, func(s *TunnelStatus) { s.State, s.ConnectedSince, s.LastError = "reconnecting", time.Time{}, e.Reason })
			ev.Event = audit.TunnelDisconnected
			log.Debug("tunnel disconnected", attrEvent, ev.Event, attrChannel, e.ChannelID, attrReason, e.Reason)
		case tunnel.EventStreamOpened:
			ev.Event = audit.StreamStarted
			log.Info("stream started", attrEvent, evStreamStart, attrService, e.Service, attrLocalAddr, e.LocalAddr,
				attrStream, e.StreamID, attrConn, e.ConnectionID, attrChannel, e.ChannelID)
		case tunnel.EventStreamClosed:
			ev.Event, ev.BytesIn, ev.BytesOut, ev.DurationMS = audit.StreamEnded, e.BytesIn, e.BytesOut, e.Duration.Milliseconds()
			attrs := []any{attrEvent, evStreamEnd, attrService, e.Service, attrLocalAddr, e.LocalAddr,
				attrStream, e.StreamID, attrConn, e.ConnectionID, attrBytesIn, e.BytesIn, attrBytesOut, e.BytesOut,
				attrDuration, e.Duration.Round(time.Millisecond).String(), attrReason, e.Reason, attrChannel, e.ChannelID}
			if e.Err != nil {
				ev.Err = e.Err.Error()
				attrs = append(attrs, attrErr, ev.Err)
			}
			log.Info("stream ended", attrs...)
		case tunnel.EventReconnecting:
			ev.Event, ev.DurationMS = audit.TunnelReconnecting, e.Duration.Milliseconds()
			if e.Err != nil {
				ev.Err = e.Err.Error()
				o.update(t.id, func(s *TunnelStatus) { s.LastError = ev.Err })
			}
			log.Debug("tunnel reconnecting", attrEvent, ev.Event, attrReason, e.Reason)
		default:
			log.Debug("tunnel event", attrEvent, "tunnel."+e.Kind.String(), attrReason, e.Reason)
			return
		}
		o.emit(ev)
	}
}

// isRejected reports a final handshake refusal (4xx).
func isRejected(err error) bool { return errors.Is(err, tunnel.ErrRejected) }
