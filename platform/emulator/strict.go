package emulator

import (
	"slices"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// strictState is what strict mode remembers about one connection: whether
// its stream messages carry a serviceId (mixing is a violation).
type strictState struct {
	decided     bool
	withService bool
}

func streamType(t protocol.Type) bool {
	switch t {
	case protocol.TypeData, protocol.TypeStreamStart, protocol.TypeStreamReset,
		protocol.TypeConnectionStart, protocol.TypeConnectionReset:
		return true
	}
	return false
}

// check returns a description of the first rule of PROTOCOL.md §10 item 5
// (and §5.4) that m breaks, or "". Oversized payloads are already rejected
// by Message.Unmarshal.
func (s *strictState) check(p *peer, m *protocol.Message) string {
	switch {
	case m.Type == protocol.TypeUnknown:
		return "message type 0 (UNKNOWN) is invalid"
	case m.Type == protocol.TypeSessionReset || m.Type == protocol.TypeServiceIDs:
		return "clients must not send " + m.Type.String()
	case (m.Type == protocol.TypeStreamStart || m.Type == protocol.TypeConnectionStart) && p.mode == modeDest:
		return "a destination must not send " + m.Type.String()
	case p.sub == protocol.SubprotocolV1 && (m.Type > protocol.TypeSessionReset || m.ServiceID != "" ||
		m.ConnectionID != 0 || len(m.AvailableServiceIDs) > 0):
		return "a aws.iot.securetunneling-1.0 client sent V2/V3 fields or types"
	case m.Type > protocol.TypeConnectionReset && !m.Ignorable:
		return "unknown message type " + m.Type.String() + " without ignorable"
	}
	if !streamType(m.Type) {
		return ""
	}
	switch {
	case m.StreamID == 0:
		return m.Type.String() + " with streamId 0"
	case m.StreamID < 0:
		return m.Type.String() + " with a negative streamId"
	case m.ServiceID != "" && !slices.Contains(p.services, m.ServiceID):
		return m.Type.String() + " names serviceId " + truncate(m.ServiceID, 40) + ", which the tunnel does not have"
	}
	has := m.ServiceID != ""
	if s.decided && has != s.withService {
		return "messages with and without serviceId are mixed on one connection"
	}
	s.decided, s.withService = true, has
	return ""
}
