package emulator

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

func body(t *testing.T, m protocol.Message) []byte {
	t.Helper()
	b, err := m.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sendRaw(t *testing.T, c *wsClient, bodies ...[]byte) {
	t.Helper()
	var b []byte
	for _, x := range bodies {
		b = binary.BigEndian.AppendUint16(b, uint16(len(x)))
		b = append(b, x...)
	}
	if err := c.c.WriteMessage(websocket.BinaryMessage, b); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// TestStrictMode sends each violation of PROTOCOL.md §10 item 5: strict mode
// closes the sender with 1002; the default mode relays the frame unchanged.
func TestStrictMode(t *testing.T) {
	big := protowire.AppendTag(nil, 1, protowire.VarintType)
	big = protowire.AppendVarint(big, 1)
	big = protowire.AppendTag(big, 2, protowire.VarintType)
	big = protowire.AppendVarint(big, 1)
	big = protowire.AppendTag(big, 4, protowire.BytesType)
	big = protowire.AppendBytes(big, make([]byte, protocol.MaxPayload+1))
	tests := []struct {
		name   string
		from   string // "source" or "destination"
		sub    string
		prior  []protocol.Message
		bad    func(t *testing.T) []byte
		relays bool // relayed in default mode
	}{
		{"type 0", "source", "", nil, func(t *testing.T) []byte { return body(t, protocol.Message{StreamID: 1}) }, true},
		{"SESSION_RESET from client", "source", "", nil, func(t *testing.T) []byte { return body(t, protocol.Message{Type: protocol.TypeSessionReset}) }, true},
		{"SERVICE_IDS from client", "destination", "", nil, func(t *testing.T) []byte {
			return body(t, protocol.Message{Type: protocol.TypeServiceIDs, AvailableServiceIDs: []string{"SSH"}})
		}, true},
		{"STREAM_START from destination", "destination", "", nil, func(t *testing.T) []byte { return body(t, start("SSH", 1)) }, true},
		{"CONNECTION_START from destination", "destination", "", nil, func(t *testing.T) []byte {
			return body(t, protocol.Message{Type: protocol.TypeConnectionStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
		}, true},
		{"streamId 0", "source", "", nil, func(t *testing.T) []byte { return body(t, data("SSH", 0, []byte("x"))) }, true},
		{"negative streamId", "source", "", nil, func(t *testing.T) []byte { return body(t, start("SSH", -1)) }, true},
		{"unknown serviceId", "source", "", nil, func(t *testing.T) []byte { return body(t, start("FTP", 1)) }, true},
		{"V1 client sends serviceId", "source", protocol.SubprotocolV1, nil, func(t *testing.T) []byte { return body(t, start("SSH", 1)) }, true},
		{"V1 client sends CONNECTION_START", "source", protocol.SubprotocolV1, nil, func(t *testing.T) []byte {
			return body(t, protocol.Message{Type: protocol.TypeConnectionStart, StreamID: 1})
		}, true},
		{"mixed serviceId", "source", "", []protocol.Message{start("SSH", 1)}, func(t *testing.T) []byte { return body(t, data("", 1, []byte("x"))) }, true},
		{"unknown type not ignorable", "source", "", nil, func(t *testing.T) []byte { return body(t, protocol.Message{Type: 9}) }, true},
		{"payload over 64512", "source", "", nil, func(*testing.T) []byte { return big }, true},
		{"malformed protobuf", "source", "", nil, func(*testing.T) []byte { return []byte{0x08} }, true},
	}
	for _, strict := range []bool{true, false} {
		env := startEmulator(t, func(c *Config) { c.Strict = strict })
		for _, tt := range tests {
			t.Run(tt.name+map[bool]string{true: " strict", false: " default"}[strict], func(t *testing.T) {
				tun := env.open(t, `{"destinationConfig":{"services":["SSH"]}}`)
				sub := tt.sub
				if sub == "" {
					sub = protocol.SubprotocolV3
				}
				src := env.dial(t, dialOpts{token: tun.src, subs: []string{sub}})
				dst := env.dial(t, dialOpts{token: tun.dst, mode: "destination"})
				dst.recv(t)
				if sub != protocol.SubprotocolV1 {
					src.recv(t)
				}
				from, to := src, dst
				if tt.from == "destination" {
					from, to = dst, src
				}
				if len(tt.prior) > 0 {
					from.send(t, tt.prior...)
					for range tt.prior {
						to.recv(t)
					}
				}
				bad := tt.bad(t)
				sendRaw(t, from, bad)
				if strict {
					if code := from.closeCode(t); code != websocket.CloseProtocolError {
						t.Fatalf("close code %d, want 1002", code)
					}
					return
				}
				_ = to.c.SetReadDeadline(deadline())
				got, err := to.fr.Next()
				if err != nil || !bytes.Equal(got, bad) {
					t.Fatalf("relayed %x (%v), want %x", truncate(string(got), 20), err, truncate(string(bad), 20))
				}
			})
		}
	}
}

func TestBadFramingCloses(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{}`)
	src := env.dial(t, dialOpts{token: tun.src})
	src.recv(t)
	if err := src.c.WriteMessage(websocket.BinaryMessage, []byte{0, 0}); err != nil {
		t.Fatal(err)
	}
	if code := src.closeCode(t); code != websocket.CloseProtocolError {
		t.Fatalf("close code %d for a zero-length frame", code)
	}
}
