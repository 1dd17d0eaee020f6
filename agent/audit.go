package agent

import (
	"log/slog"
	"time"
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
	attrBytes           = "bytes"
	attrExpires         = "expires"
	attrMaxTunnels      = "max_tunnels"
	attrReplaced        = "replaced"
	attrSuppressed      = "suppressed"
	attrNotConnectedFor = "not_connected_for"
)

// Audit event names: one per tunnel opened/closed and per stream
// started/ended. None carries a token.
const (
	evTunnelOpened = "tunnel.opened"
	evTunnelClosed = "tunnel.closed"
	evStreamStart  = "stream.started"
	evStreamEnd    = "stream.ended"
)

func (a *Agent) auditTunnelOpened(t *tunnelEntry, resumed bool) {
	a.log.Info("tunnel opened", attrEvent, evTunnelOpened, attrTunnel, t.id,
		attrServices, t.rec.Services, attrRegion, t.rec.Region, attrResumed, resumed,
		slog.Time(attrExpires, t.rec.Expires))
}

func (a *Agent) auditTunnelClosed(t *tunnelEntry, reason string, err error) {
	attrs := []any{attrEvent, evTunnelClosed, attrTunnel, t.id, attrServices, t.rec.Services,
		attrReason, reason, attrDuration, time.Since(t.started).Round(time.Millisecond).String()}
	if err != nil {
		attrs = append(attrs, attrErr, err.Error())
	}
	a.log.Info("tunnel closed", attrs...)
}
