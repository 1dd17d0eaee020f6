package tunnel

// peerVersion is what a source with DestinationClientType auto knows of
// the destination's message format, decided only from unambiguous evidence.
//
//	unknown --DATA or CONNECTION_RESET with a connection id--> v3
//	any     --DATA without a connection id on a V3 stream----> v2
//	any     --STREAM_RESET of a stream it never answered-----> unknown
//
// Only a destination sends DATA, and only one that drops connection ids
// sends DATA without one on a stream we started with one: that is a V2 (or
// V1) destination. A STREAM_RESET proves nothing. The service sends one for
// every stream we started when a destination connects or reconnects, so a
// source whose clients came before the destination receives exactly what a
// V2 destination answers to a CONNECTION_START; a V3 C++ destination also
// answers a CONNECTION_START it cannot dial with STREAM_RESET. A reset of a
// stream that never heard from the destination may therefore mean a new
// destination, possibly of another version: the version is decided again.
// While unknown the source speaks V3.
type peerVersion int

const (
	peerUnknown peerVersion = iota
	peerV3
	peerV2
)

func (v peerVersion) String() string {
	switch v {
	case peerV3:
		return "V3"
	case peerV2:
		return "V2"
	}
	return "unknown"
}

// peerEvidenceLocked records what a message from the destination on st
// says about its version (source mode, automatic client type only).
// connID is the message's connection id; reset marks a STREAM_RESET.
func (t *streamTable) peerEvidenceLocked(st *stream, connID uint32, reset bool) {
	if !t.learnPeer {
		return
	}
	switch {
	case reset && !st.heard && t.peer != peerUnknown:
		t.setPeerLocked(peerUnknown, st.service, "a stream it never answered was reset: the destination may have reconnected")
	case reset:
	case connID != 0:
		t.setPeerLocked(peerV3, st.service, "it sent a connection id")
	case st.v3:
		t.setPeerLocked(peerV2, st.service, "it sent DATA without a connection id")
	}
	if !reset {
		st.heard = true
	}
}

func (t *streamTable) setPeerLocked(v peerVersion, service, why string) {
	if t.peer == v {
		return
	}
	t.peer = v
	switch v {
	case peerV2:
		t.log.Info("the destination speaks V2: using one connection per stream", logService, service, logReason, why)
	case peerV3:
		t.log.Debug("the destination speaks V3", logService, service, logReason, why)
	default:
		t.log.Info("deciding the destination's protocol version again; speaking V3 until it shows", logService, service, logReason, why)
	}
}
