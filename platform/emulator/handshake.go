package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
	"slices"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// Data-plane handshake constants (protocol.md §3, §4.1).
const (
	tunnelPath        = "/tunnel"
	modeParam         = "local-proxy-mode"
	tokenHeader       = "access-token"
	tokenCookie       = "awsiot-tunnel-token"
	clientTokenHeader = "client-token"
	channelIDHeader   = "channel-id"
	maxHandshakeSize  = 4096
)

var (
	clientTokenRe = regexp.MustCompile(`^[a-zA-Z0-9-]{32,128}$`)
	accountRe     = regexp.MustCompile(`^[0-9]{12}$`)
	// subprotocols in order of preference: the highest offered one wins.
	subprotocols = []string{protocol.SubprotocolV3, protocol.SubprotocolV2, protocol.SubprotocolV1}
)

// handshakeError is a refused upgrade: HTTP status and a plain-text body.
type handshakeError struct {
	status int
	msg    string
}

func (e *handshakeError) Error() string { return e.msg }

func refuse(msg string) *handshakeError {
	return &handshakeError{status: http.StatusBadRequest, msg: msg}
}

// handshake is what a data-plane upgrade request asks for.
type handshake struct {
	mode        int
	token       string // never logged
	clientToken string // never logged
	subprotocol string
}

// requestSize approximates the size of the request as sent on the wire:
// request line, Host and all other headers.
func requestSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	n += len("Host: ") + len(r.Host) + 2
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}

// parseHandshake checks a data-plane upgrade request against the rules of
// protocol.md §3.2 and §10 item 3, except the token's validity (store.admit).
func parseHandshake(r *http.Request) (handshake, *handshakeError) {
	var hs handshake
	if r.URL.Path != tunnelPath {
		return hs, refuse("Invalid request path: the data plane serves only GET /tunnel?local-proxy-mode=source|destination.")
	}
	if requestSize(r) > maxHandshakeSize {
		return hs, refuse("Request too large: the upgrade request must not exceed 4096 bytes.")
	}
	if r.Method != http.MethodGet || !websocket.IsWebSocketUpgrade(r) ||
		r.Header.Get("Sec-Websocket-Version") != "13" || r.Header.Get("Sec-Websocket-Key") == "" {
		return hs, refuse("Not a WebSocket upgrade: send GET /tunnel with Upgrade: websocket, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key.")
	}
	switch modes := r.URL.Query()[modeParam]; {
	case len(modes) == 1 && modes[0] == "source":
		hs.mode = modeSource
	case len(modes) == 1 && modes[0] == "destination":
		hs.mode = modeDest
	default:
		return hs, refuse("Invalid local-proxy-mode: pass exactly one local-proxy-mode=source or local-proxy-mode=destination query parameter.")
	}
	tokens := r.Header.Values(tokenHeader)
	for _, c := range r.Cookies() {
		if c.Name == tokenCookie {
			tokens = append(tokens, c.Value)
		}
	}
	if len(tokens) != 1 || tokens[0] == "" {
		return hs, refuse("Invalid access token: send exactly one access token, in the access-token header or in the awsiot-tunnel-token cookie.")
	}
	hs.token = tokens[0]
	switch cts := r.Header.Values(clientTokenHeader); {
	case len(cts) > 1:
		return hs, refuse("Invalid client token: send at most one client-token header.")
	case len(cts) == 1 && !clientTokenRe.MatchString(cts[0]):
		return hs, refuse("Invalid client token: the client token must match ^[a-zA-Z0-9-]{32,128}$.")
	case len(cts) == 1:
		hs.clientToken = cts[0]
	}
	offered := websocket.Subprotocols(r)
	for _, p := range subprotocols {
		if slices.Contains(offered, p) {
			hs.subprotocol = p
			break
		}
	}
	if hs.subprotocol == "" {
		return hs, refuse("No supported subprotocol: offer aws.iot.securetunneling-3.0, -2.0 or -1.0 in Sec-WebSocket-Protocol.")
	}
	return hs, nil
}

func newChannelID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func writeRefusal(w http.ResponseWriter, e *handshakeError) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(e.status)
	_, _ = w.Write([]byte(e.msg))
}
