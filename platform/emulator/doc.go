// Package emulator is a local stand-in for AWS IoT Secure Tunneling: the
// awsJson1.1 IoTSecuredTunneling API, the WebSocket data-plane relay with the
// access-token rules, a local CA issuing server and device certificates, and
// the MQTT notification to the device through an embedded (mutual TLS) or
// external broker. Tunnels live in memory; the state directory holds only the
// CA and certificates.
//
// Where AWS's behaviour is undocumented (protocol.md §12) the emulator
// chooses as follows:
//
//   - API envelope: a method other than POST or a path other than / gets
//     404 UnknownOperationException; a missing or unknown X-Amz-Target, or a
//     Content-Type other than application/x-amz-json-1.1, gets 400
//     UnknownOperationException; a body that does not decode gets 400
//     SerializationException; model violations get 400 ValidationException
//     listing every violated member ("Value at 'tags.1.member.key' failed to
//     satisfy constraint: ..."). The Authorization header is not checked.
//   - More than 3 services is LimitExceededException (a service quota), as is
//     OpenTunnel beyond Config.MaxOpenTunnels open tunnels. Duplicate
//     services are a ValidationException.
//   - ListTunnels returns at most 100 summaries per page when maxResults is
//     absent; nextToken is opaque and only valid for ListTunnels.
//   - RotateTunnelAccessToken on a CLOSED tunnel is ResourceNotFoundException.
//     A destinationConfig given with DESTINATION or ALL replaces the tunnel's
//     destinationConfig. Connections made with the old tokens stay up unless
//     Config.RotateDisconnects is set.
//   - Handshake refusals: 400 for a malformed request (path, mode, token
//     count, client-token format, no subprotocol, over 4096 bytes, mode
//     mismatch) and for the documented reuse and client-token mismatch
//     texts; 401 for an unknown or revoked token and for a closed or expired
//     tunnel. A client token may be bound to one access token only.
//   - Frames arriving while the other side is not connected are dropped.
//     When a connection of one mode is accepted, the other side gets a
//     STREAM_RESET for every stream the source had started and not reset (a
//     replaced or reconnected peer has lost them).
//   - Close codes: 1000 for CloseTunnel, expiry and replacement; 1001 on
//     emulator shutdown; 1002 for framing errors and, with Config.Strict, the
//     violations of protocol.md §10 item 5; 1003 for a text message.
//   - Off by default, to emulate AWS more closely: Config.Bandwidth (the
//     ~800 KB/s per-tunnel quota), Config.IdleTimeout (the ~60 s idle drop of
//     AWS's load balancer; pings count as traffic) and
//     Config.RotateDisconnects.
//
// The relay reads each connection as one byte stream (binary WebSocket
// messages concatenated, continuation frames reassembled) and forwards every
// frame unchanged: a message of whole frames leaves as it came, and the
// frames a message completes (when frames span messages) leave together as
// one message of at most 131076 bytes. Messages are never merged, because
// peers depend on where a message ends (the C++ localproxy stops after a
// STREAM_START until the next message arrives). One goroutine writes each WebSocket; senders hand it
// frames through a bounded buffer and block when it is full, so a slow client
// slows its peer down instead of growing memory.
package emulator
