package tunnel

import "time"

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	// EventConnected: the WebSocket is up (ChannelID, Subprotocol).
	EventConnected EventKind = iota + 1
	// EventDisconnected: the WebSocket went down (Reason, Err); every stream
	// was reset.
	EventDisconnected
	// EventStreamOpened: a local connection is attached to a stream (Service,
	// LocalAddr, StreamID, ConnectionID).
	EventStreamOpened
	// EventStreamClosed: a local connection ended (plus BytesIn, BytesOut,
	// Duration, Reason, Err). Sent also for a failed destination dial.
	EventStreamClosed
	// EventReconnecting: waiting Duration before the next connection attempt
	// (Err is the last failure).
	EventReconnecting
	// EventServiceIDs: the service announced the tunnel's services (Reason
	// holds them, comma separated).
	EventServiceIDs
)

func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventStreamOpened:
		return "stream-opened"
	case EventStreamClosed:
		return "stream-closed"
	case EventReconnecting:
		return "reconnecting"
	case EventServiceIDs:
		return "service-ids"
	}
	return "unknown"
}

// Event reports a session or stream lifecycle change. BytesIn counts bytes
// that came from the tunnel and were written to the local connection;
// BytesOut counts bytes read from the local connection and sent into the
// tunnel.
type Event struct {
	Kind         EventKind
	ChannelID    string
	Subprotocol  string
	Service      string
	LocalAddr    string
	StreamID     int32
	ConnectionID uint32
	BytesIn      int64
	BytesOut     int64
	Duration     time.Duration
	Err          error
	Reason       string
}
