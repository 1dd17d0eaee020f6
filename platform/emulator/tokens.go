package emulator

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
)

// Handshake rejection texts. The first two are the service's documented
// texts (protocol.md §3.4); the others are ours.
const (
	msgTokenReused    = "Invalid access token: The access token was previously used and can not be used again."
	msgClientMismatch = "Invalid client token: The provided client token does not match the client token that was previously set."
	msgClientInUse    = "Invalid client token: The provided client token is already bound to another access token. Use a new client token for each access token."
	msgTokenUnknown   = "Invalid access token: The access token is not valid. It is unknown or was revoked by RotateTunnelAccessToken."
	msgTunnelClosed   = "Invalid access token: The tunnel of this access token is closed or expired. Open a new tunnel."
	msgModeMismatch   = "Invalid local-proxy-mode: The access token is not valid for local-proxy-mode=%s."
)

// admit applies the access-token rules of protocol.md §4.1 for one
// handshake and, on success, consumes or binds the token.
func (s *store) admit(token, clientToken string, mode int) (_ *tunnel, _ []string, herr *handshakeError) {
	defer func() {
		if herr == nil {
			s.sv.save()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, ok := s.tokens[token]
	if !ok {
		return nil, nil, &handshakeError{status: 401, msg: msgTokenUnknown}
	}
	t := ref.t
	s.refresh(t, s.now())
	if t.status != statusOpen {
		return nil, nil, &handshakeError{status: 401, msg: msgTunnelClosed}
	}
	if ref.mode != mode {
		return nil, nil, &handshakeError{status: 400, msg: fmt.Sprintf(msgModeMismatch, modeNames[mode])}
	}
	ms := &t.modes[mode]
	switch {
	case ms.used && ms.clientToken == "":
		return nil, nil, &handshakeError{status: 400, msg: msgTokenReused}
	case ms.used && clientToken != ms.clientToken:
		return nil, nil, &handshakeError{status: 400, msg: msgClientMismatch}
	case !ms.used && clientToken != "":
		// A client token pairs with one access token only: a token bound
		// earlier (even one since rotated) cannot take a new partner.
		if _, ok := s.clientTokens[clientToken]; ok {
			return nil, nil, &handshakeError{status: 400, msg: msgClientInUse}
		}
		s.clientTokens[clientToken] = tokenRef{t: t, mode: mode}
		ms.clientToken = clientToken
	}
	ms.used = true
	return t, slices.Clone(t.services), nil
}

// newAccessToken returns a printable, opaque token shaped like the real ones.
func newAccessToken() string {
	var b [96]byte
	_, _ = rand.Read(b[:])
	return "AQGAA" + base64.RawURLEncoding.EncodeToString(b[:])
}

// newUUID returns a random (version 4) UUID string.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
