package tunnel

import (
	"log/slog"
	"strconv"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// dispatch handles one message from the WebSocket reader goroutine.
func (l *link) dispatch(m *protocol.Message) {
	switch m.Type {
	case protocol.TypeData:
		l.onData(m)
	case protocol.TypeStreamStart:
		if l.s.cfg.Mode == ModeDestination {
			l.dest.onStreamStart(m)
			return
		}
		l.rate.warn(warnStartAtSrc, "ignoring STREAM_START from the destination: only a source may send it", logService, peerString(m.ServiceID), logStream, m.StreamID)
	case protocol.TypeConnectionStart:
		if l.s.cfg.Mode == ModeDestination {
			l.dest.onConnectionStart(m)
			return
		}
		l.rate.warn(warnConnAtSrc, "ignoring CONNECTION_START from the destination: only a source may send it", logService, peerString(m.ServiceID), logStream, m.StreamID)
	case protocol.TypeStreamReset:
		l.onStreamReset(m)
	case protocol.TypeConnectionReset:
		l.onConnectionReset(m)
	case protocol.TypeSessionReset:
		l.rate.limited(slog.LevelInfo, warnSessionReset, "the tunnel service reset the session: closing every stream")
		l.streams.mu.Lock()
		l.streams.closeStreamsLocked("session reset by the tunnel service")
		l.streams.mu.Unlock()
	case protocol.TypeServiceIDs:
		l.onServiceIDs(m)
	default:
		if m.Ignorable {
			l.log.Debug("ignoring an ignorable message of unknown type", logType, m.Type)
			return
		}
		l.rate.warn(warnUnknownType, "skipping a message of unknown type", logType, m.Type)
	}
}

// maxLoggedIDs bounds the service ids named in one log line or event.
const maxLoggedIDs = 8

func (l *link) onServiceIDs(m *protocol.Message) {
	ids := append([]string(nil), m.AvailableServiceIDs...)
	l.streams.mu.Lock()
	l.streams.serviceIDs = ids
	l.streams.mu.Unlock()
	shown := boundedIDs(ids)
	l.rate.limited(slog.LevelInfo, warnServiceIDs, "tunnel services announced", logServiceID, shown, "count", len(ids))
	_, unnamed := l.s.services()[Unnamed]
	switch {
	case unnamed && len(ids) != 1:
		l.rate.warn(warnServiceIDs, "the unnamed service mapping serves a tunnel with exactly one service, and this one has not: name the services to forward (e.g. SSH=22,HTTP=80)",
			logServiceID, shown, "count", len(ids))
	case !unnamed:
		for _, id := range ids {
			if _, ok := l.s.services()[id]; !ok {
				l.rate.warn(warnNotInMap, "the tunnel offers a service that is not in the services map; add it to allow it", logService, peerString(id))
			}
		}
	}
	l.s.emit(Event{Kind: EventServiceIDs, ChannelID: l.channelID, Reason: strings.Join(shown, ",")})
	l.s.setLink(l)
}

// boundedIDs is at most maxLoggedIDs of ids, each bounded by peerString,
// with a last entry saying how many were left out.
func boundedIDs(ids []string) []string {
	n := min(len(ids), maxLoggedIDs)
	out := make([]string, 0, n+1)
	for _, id := range ids[:n] {
		out = append(out, peerString(id))
	}
	if len(ids) > n {
		out = append(out, "...("+strconv.Itoa(len(ids)-n)+" more)")
	}
	return out
}

func (l *link) onData(m *protocol.Message) {
	l.streams.mu.Lock()
	f := l.streams.dataTargetLocked(m)
	l.streams.mu.Unlock()
	if f == nil {
		return // stale (PROTOCOL.md §6.1) or unknown connection
	}
	if !l.carried.Load() {
		l.carried.Store(true)
	}
	// Outside l.streams.mu: a full queue makes this wait up to ConnStallTimeout.
	res := f.push(m.Payload, &l.gate)
	if res == pushed {
		return
	}
	l.streams.mu.Lock()
	was := l.streams.unregisterLocked(f)
	l.streams.mu.Unlock()
	if !was {
		return
	}
	if res == pushBudget {
		l.rate.warn(warnBudget, "resetting a connection: the agent's queue budget toward local connections is used up (queue_budget)",
			logService, f.st.service, logStream, f.st.id, logConn, f.connID, "budget", l.s.cfg.Limits.Budget())
		l.w.sendCtrl(f.resetMessage())
		f.abort("agent queue budget used up")
		return
	}
	l.rate.warn(warnOverflow, "resetting a connection whose local socket does not keep up: its buffer stayed full",
		logService, f.st.service, logStream, f.st.id, logConn, f.connID, "limit", l.s.cfg.ConnBufferSize)
	l.w.sendCtrl(f.resetMessage())
	f.abort("local socket too slow: buffer full")
}

func (l *link) onStreamReset(m *protocol.Message) {
	l.streams.mu.Lock()
	defer l.streams.mu.Unlock()
	st := l.streams.lookup(m)
	if st == nil {
		return
	}
	l.streams.peerEvidenceLocked(st, 0, true)
	l.streams.closeStreamLocked(st, "stream reset by the peer")
}

func (l *link) onConnectionReset(m *protocol.Message) {
	l.streams.mu.Lock()
	defer l.streams.mu.Unlock()
	st := l.streams.lookup(m)
	if st == nil {
		return
	}
	cid := max(m.ConnectionID, 1)
	l.streams.peerEvidenceLocked(st, cid, false)
	if f := st.conns[cid]; f != nil {
		l.streams.unregisterLocked(f)
		f.drainClose("connection reset by the peer")
	}
}
