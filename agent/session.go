package agent

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
)

// runner is the part of *tunnel.Session the agent uses; tests substitute it.
type runner interface {
	Run(ctx context.Context) error
}

type sessionFactory func(tunnel.Config) (runner, error)

func newTunnelSession(c tunnel.Config) (runner, error) { return tunnel.New(c) }

// sessionSpec builds the destination session's config for a tunnel. The
// whole services map is the allow-list: the session resets streams for
// service ids outside it.
func (a *Agent) sessionSpec(t *tunnelEntry) tunnel.Config {
	c := tunnel.Config{
		Mode:             tunnel.ModeDestination,
		Endpoint:         a.cfg.DataEndpoint,
		Region:           t.rec.Region,
		AccessToken:      t.rec.AccessToken,
		ClientToken:      t.rec.ClientToken,
		CAFile:           a.cfg.CAFile,
		AllowPlaintext:   a.cfg.AllowPlaintextDataPlane,
		Services:         a.cfg.Services,
		ConnBufferSize:   int(a.cfg.ConnBuffer),
		ConnStallTimeout: a.cfg.ConnStallTimeout,
		MaxConnections:   a.cfg.MaxConnections,
		Limits:           a.limits,
		Logger:           a.log.With(attrTunnel, t.id),
		OnEvent:          a.eventHandler(t),
	}
	if a.cfg.HTTPSProxy != "" {
		if u, err := url.Parse(a.cfg.HTTPSProxy); err == nil {
			c.Proxy = http.ProxyURL(u)
		}
	}
	return c
}

// eventHandler writes the stream audit events; it never blocks.
func (a *Agent) eventHandler(t *tunnelEntry) func(tunnel.Event) {
	log := a.log.With(attrTunnel, t.id)
	return func(e tunnel.Event) {
		switch e.Kind {
		case tunnel.EventConnected: // the session logs it too
			t.connected.Store(true)
			t.wasConnected.Store(true)
			log.Debug("tunnel connected", attrEvent, "tunnel.connected", attrChannel, e.ChannelID)
		case tunnel.EventDisconnected:
			t.connected.Store(false)
			log.Debug("tunnel disconnected", attrEvent, "tunnel.disconnected", attrReason, e.Reason)
		case tunnel.EventStreamOpened:
			log.Info("stream started", attrEvent, evStreamStart, attrService, e.Service, attrLocalAddr, e.LocalAddr,
				attrStream, e.StreamID, attrConn, e.ConnectionID)
		case tunnel.EventStreamClosed:
			attrs := []any{attrEvent, evStreamEnd, attrService, e.Service, attrLocalAddr, e.LocalAddr,
				attrStream, e.StreamID, attrConn, e.ConnectionID, attrBytesIn, e.BytesIn, attrBytesOut, e.BytesOut,
				attrDuration, e.Duration.Round(time.Millisecond).String(), attrReason, e.Reason}
			if e.Err != nil {
				attrs = append(attrs, attrErr, e.Err.Error())
			}
			log.Info("stream ended", attrs...)
		default:
			log.Debug("tunnel event", attrEvent, "tunnel."+e.Kind.String(), attrReason, e.Reason)
		}
	}
}

// isRejected reports a final handshake refusal (4xx).
func isRejected(err error) bool { return errors.Is(err, tunnel.ErrRejected) }
