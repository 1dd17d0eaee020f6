// Package audit is the agent's audit trail as data: the Event every
// tunnel, stream and notification decision produces, the id that names a
// tunnel in the device's logs (TunnelID, which tunnelctl prints too), and
// the bounded Queue that publishes events to the cloud at QoS 1 through a
// Publisher (the agent's MQTT connection or Greengrass IPC).
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Event names. Those for which Published reports true form the audit trail
// sent to the cloud; the others feed the status socket and the metrics.
const (
	TunnelOpened        = "tunnel.opened"
	TunnelConnected     = "tunnel.connected"
	TunnelDisconnected  = "tunnel.disconnected"
	TunnelReconnecting  = "tunnel.reconnecting"
	TunnelClosed        = "tunnel.closed"
	TunnelRefused       = "tunnel.refused"
	ServiceRefused      = "service.refused"
	StreamStarted       = "stream.started"
	StreamEnded         = "stream.ended"
	NotificationDropped = "notification.dropped"
	// NotificationDroppedQuiet is a malformed notification beyond the log's
	// rate limit: counted, not published.
	NotificationDroppedQuiet = "notification.dropped.quiet"
	// NotificationDeferred: the agent was busy; the notification stays
	// unacknowledged and the broker delivers it again.
	NotificationDeferred = "notification.deferred"
	NotificationDup      = "notification.duplicate"
)

// Reasons of tunnel.refused and notification.dropped that the metrics
// count apart.
const (
	ReasonMaxTunnels = "max_tunnels reached"
	ReasonNoService  = "no allowed service"
	ReasonQueueFull  = "agent busy (queue full)"
)

// Event is one audit event. Zero fields are left out of the JSON form; an
// absent bytes_in means 0. No field ever holds a token.
type Event struct {
	// Seq numbers the events in the order the Queue took them (from 1 at
	// agent start); a subscriber sees gaps only where the queue dropped
	// events, and may see a repeat after a reconnect (QoS 1).
	Seq   uint64    `json:"seq,omitempty"`
	Time  time.Time `json:"time"`
	Event string    `json:"event"`
	Thing string    `json:"thing,omitempty"`
	// Tunnel is TunnelID of the tunnel's destination token; ChannelID the
	// data plane's channel-id response header of the current connection.
	Tunnel    string   `json:"tunnel,omitempty"`
	ChannelID string   `json:"channel_id,omitempty"`
	Region    string   `json:"region,omitempty"`
	Services  []string `json:"services,omitempty"`
	Service   string   `json:"service,omitempty"`
	LocalAddr string   `json:"local_addr,omitempty"`
	StreamID  int32    `json:"stream_id,omitempty"`
	ConnID    uint32   `json:"connection_id,omitempty"`
	// BytesIn came from the tunnel and went to the local service; BytesOut
	// went the other way.
	BytesIn    int64 `json:"bytes_in,omitempty"`
	BytesOut   int64 `json:"bytes_out,omitempty"`
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Protocol is the negotiated subprotocol version ("3.0").
	Protocol string `json:"protocol,omitempty"`
	Resumed  bool   `json:"resumed,omitempty"`
	// LocalLifetime is max_tunnel_lifetime when set: the agent ends the
	// tunnel after it. The service's own expiry is not known to the device.
	LocalLifetime string `json:"local_lifetime,omitempty"`
	// Status is the HTTP status of a refused data-plane handshake.
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
	Err    string `json:"err,omitempty"`
}

// Published reports whether the event belongs to the trail sent to the
// cloud: tunnels, streams, refusals and dropped notifications, not the
// reconnect attempts, duplicate or deferred notifications, nor malformed
// ones beyond the log's rate limit (which only count).
func (e *Event) Published() bool {
	switch e.Event {
	case TunnelReconnecting, NotificationDup, NotificationDroppedQuiet, NotificationDeferred:
		return false
	}
	return true
}

// TunnelID names a tunnel by a hash of its destination access token: the
// id the agent logs as tunnel=, uses for its state file, and tunnelctl
// prints next to the tunnel id, so an operator can find a tunnel in a
// device's journal. It reveals nothing of the token.
func TunnelID(destinationToken string) string {
	sum := sha256.Sum256([]byte("tunnel-agent/v1\x00" + destinationToken))
	return hex.EncodeToString(sum[:12])
}
