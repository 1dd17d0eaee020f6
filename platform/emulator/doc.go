// Package emulator is a local stand-in for AWS IoT Secure Tunneling: the
// awsJson1.1 IoTSecuredTunneling API, the WebSocket data-plane relay with the
// access-token rules, a local CA issuing server and device certificates, and
// the MQTT notification to the device through an embedded (mutual TLS) or
// external broker. The state directory holds the CA, the certificates and
// tunnels.json, so a restarted emulator continues every tunnel.
//
// The protocol and the service's rules are specified in
// agent/tunnel/protocol/PROTOCOL.md, which comments here cite as PROTOCOL.md §N.
// Where AWS's behaviour is undocumented (PROTOCOL.md §11) the emulator
// chooses as follows (PROTOCOL.md §10 summarises them):
//
//   - API envelope: a method other than POST or a path other than / gets
//     404 UnknownOperationException; then the body is read (over 1 MiB:
//     413 SerializationException, unread, connection closed), then SigV4 is
//     checked (below), then a missing or unknown X-Amz-Target, or a
//     Content-Type other than application/x-amz-json-1.1, gets 400
//     UnknownOperationException.
//   - Decoding: a body that does not decode gets 400 SerializationException
//     naming the member or offset. Member names match exactly; a
//     differently cased known member is an unknown member, and unknown
//     members are skipped. Invalid UTF-8 and lone UTF-16 surrogate escapes
//     are refused (a genuine U+FFFD is a character like any other). Nesting
//     deeper than 32 levels is a SerializationException; a list longer than
//     1000 members is a ValidationException for that list alone (no model
//     maximum is above 200; the ServiceList has none, AWS's limit is
//     unknown).
//   - Validation: model violations get 400 ValidationException,
//     "N validation error(s) detected: " with the first 10 violations
//     ("Value at 'tags.1.member.key' failed to satisfy constraint: ...")
//     and "; and M more". AWS quotes the offending value; the emulator does
//     not (values can be 2048 characters). Duplicate services are a
//     violation of each repeated member.
//   - SigV4 (the service model's signing name IoTSecuredTunneling, exact
//     case; region Config.Region). Every refusal is HTTP 403:
//     no Authorization header: MissingAuthenticationTokenException;
//     another algorithm, missing Credential/SignedHeaders/Signature, a
//     credential without 5 parts, a signature that is not 64 hex digits,
//     host not signed, no X-Amz-Date or Date: IncompleteSignatureException;
//     another service, region or terminator, a scope date other than the
//     request date, a date more than 5 minutes from the emulator's clock, an
//     X-Amz-Content-Sha256 that does not match the body, and (with
//     Config.Credentials) a wrong signature: InvalidSignatureException, the
//     last one with the canonical request and string to sign the emulator
//     expected; an access key not in Config.Credentials:
//     UnrecognizedClientException. Without Config.Credentials the signature
//     itself is not checked. X-Amz-Security-Token is not checked. Presigned
//     (query-string) requests are refused. Config.NoAuth skips all of it.
//   - API server bounds: 30 s to read a request (headers and body), 30 s to
//     write the answer, 60 s idle keep-alive, 64 KiB of headers, 256
//     connections served at once (more wait in the listen backlog); the
//     data plane takes 1024 connections.
//   - Broker policy (the embedded broker's mutual-TLS listener): the
//     certificate CommonName is the thing. CONNECT with another client id
//     than the thing name (or one of Config.ClientIDs) is closed without a
//     CONNACK; SUBSCRIBE to anything but the thing's own notify topic gets
//     SUBACK 0x80; any PUBLISH disconnects the client (MQTT 3.1.1 has no
//     PUBACK failure). The plain listener and the emulator's own service
//     certificate (CommonName tunnel-emulator) are not restricted.
//     Config.BrokerAllowAll allows everything.
//   - Persistence: tunnels.json (0600) is replaced atomically after every
//     change (OpenTunnel, CloseTunnel, rotation, tags, a successful
//     handshake, expiry), and an API call returns only once its change is
//     written; there is no fsync (a kill -9 keeps it, a power loss may
//     not). Connection states are not kept: after a restart both modes are
//     DISCONNECTED until clients reconnect with their client tokens; the
//     relay's stream table starts empty. Lifetimes run on while the
//     emulator is down. Two running emulators on one state directory
//     overwrite each other's tunnels.json (sharing the CA is fine).
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
//     violations of PROTOCOL.md §10 item 5; 1003 for a text message.
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
// STREAM_START until the next message arrives; PROTOCOL.md §9.1 item 1).
//
// # Layout
//
// Five jobs, each in its own files:
//
//   - API: api.go (the operations), apitypes.go, jsondecode.go (the strict
//     decoder), validate.go (the model's rules), sigv4.go and credentials.go.
//   - Tunnel store: store.go (tunnels, tokens, expiry), tokens.go (the
//     access-token rules of a handshake), persist.go (tunnels.json).
//   - Data plane: dataplane.go (the WebSocket handler and the relaying
//     loop), handshake.go, relay.go (one tunnel's two clients and its
//     streams), peer.go (one client WebSocket), strict.go. It reaches the
//     store only through the tunnelStore interface: admit and setConnected.
//   - CA: certs.go.
//   - Broker and notification: notify.go, policy.go.
//
// Emulator (emulator.go, config.go) wires them and owns the listeners.
//
// # Concurrency
//
// Each client WebSocket (a peer) has one reader goroutine and one writer
// goroutine. Data messages are written by one goroutine at a time, chosen
// under the peer's mutex (the writing flag): the other side's reader writes
// a message itself when nothing is queued or being written, which saves a
// hand-off per message (emulator CPU per GiB 1.72 -> 1.16 s together with
// batched TLS records, see the README's Performance section); otherwise the
// message joins a bounded queue (4 x 131076 bytes) that the writer goroutine
// sends, and the sender blocks while it is full, so a slow client slows its
// peer down instead of growing memory. A client that stops reading for a
// minute is dropped, which frees the peer blocked on it. Pings and close
// frames go through WriteControl; a close frame that joined the writer's
// batch is flushed before the connection closes. Messages keep their order:
// a direct write happens only when the queue is empty and no one else is
// writing.
package emulator
