package agent

import (
	"errors"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
)

// Log attribute keys (the audit trail's schema).
const (
	attrEvent           = "event"
	attrTunnel          = "tunnel"
	attrServices        = "services"
	attrRegion          = "region"
	attrReason          = "reason"
	attrDuration        = "duration"
	attrResumed         = "resumed"
	attrService         = "service"
	attrLocalAddr       = "local_addr"
	attrBytesIn         = "bytes_in"
	attrBytesOut        = "bytes_out"
	attrStream          = "stream_id"
	attrConn            = "connection_id"
	attrChannel         = "channel_id"
	attrErr             = "err"
	attrHint            = "hint"
	attrLifetime        = "local_lifetime"
	attrProtocol        = "protocol"
	attrBytes           = "bytes"
	attrSuppressed      = "suppressed"
	attrExpires         = "expires"
	attrMaxTunnels      = "max_tunnels"
	attrReplaced        = "replaced"
	attrNotConnectedFor = "not_connected_for"
)

// Audit event names: one per tunnel opened/closed and per stream
// started/ended. None carries a token.
const (
	evTunnelOpened = audit.TunnelOpened
	evTunnelClosed = audit.TunnelClosed
	evStreamStart  = audit.StreamStarted
	evStreamEnd    = audit.StreamEnded
)

// tunnelOpened adds a new tunnel to the view, then reports it. local is
// max_tunnel_lifetime, 0 when it is not set.
func (o *observations) tunnelOpened(t *tunnelEntry, local time.Duration) {
	o.addLive(t, local)
	e := audit.Event{Event: audit.TunnelOpened, Tunnel: t.id, Services: t.rec.Services, Region: t.rec.Region, Resumed: t.resumed}
	attrs := []any{attrEvent, evTunnelOpened, attrTunnel, t.id, attrServices, t.rec.Services, attrRegion, t.rec.Region, attrResumed, t.resumed}
	// Only the local lifetime is known here: the service's expiry (the
	// lifetime given to OpenTunnel) never reaches the device.
	if local > 0 {
		left := t.rec.Expires.Sub(o.now()).Round(time.Second)
		e.LocalLifetime = left.String()
		attrs = append(attrs, attrLifetime, e.LocalLifetime)
	}
	o.log.Info("tunnel opened", attrs...)
	o.emit(e)
}

// tunnelClosed reports the end of a tunnel and takes it out of the view
// (first, so that the event's observers see it gone).
func (o *observations) tunnelClosed(t *tunnelEntry, reason string, err error) {
	d := time.Since(t.started)
	channel := o.channelOf(t.id)
	o.endLive(t.id, reason, err)
	e := audit.Event{Event: audit.TunnelClosed, Tunnel: t.id, ChannelID: channel, Services: t.rec.Services,
		Reason: reason, DurationMS: d.Milliseconds()}
	attrs := []any{attrEvent, evTunnelClosed, attrTunnel, t.id, attrServices, t.rec.Services,
		attrReason, reason, attrDuration, d.Round(time.Millisecond).String()}
	if e.ChannelID != "" {
		attrs = append(attrs, attrChannel, e.ChannelID)
	}
	if err != nil {
		e.Err = err.Error()
		attrs = append(attrs, attrErr, e.Err)
		if he, ok := errors.AsType[*tunnel.HandshakeError](err); ok {
			e.Status = he.StatusCode
		}
	}
	o.log.Info("tunnel closed", attrs...)
	o.emit(e)
}
