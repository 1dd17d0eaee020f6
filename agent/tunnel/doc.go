// Package tunnel is the AWS IoT Secure Tunneling data plane for both ends of a
// tunnel: the destination (the device agent, which dials local services) and
// the source (the operator's local proxy, which listens for local clients).
// The wire protocol is in package protocol; the rules follow protocol.md.
//
// A Session owns one WebSocket at a time to the tunneling service
// (wss://<endpoint>/tunnel?local-proxy-mode=..., subprotocols 3.0, 2.0 and
// 1.0 offered) and reconnects it with full-jitter exponential backoff, always
// with the same client token so the single-use access token stays valid. A
// 4xx handshake ends Run with ErrRejected and a *HandshakeError that says what
// to do; a normal close frame from the service (tunnel closed or expired)
// ends Run with nil. Every stream is reset when the WebSocket goes down.
//
// Per WebSocket, one goroutine reads; writes are made by one goroutine at a
// time, under a mutex. A local reader queues its DATA frame and, when no one
// else is writing, writes what is queued itself, batched into messages of at
// most 131076 bytes that leave in one system call (package batchconn); a
// writer goroutine sends the pings and what the reader queues. A
// STREAM_START, CONNECTION_START or STREAM_RESET is always the last frame of
// its message: the C++ localproxy processes nothing after one of those
// until the next message arrives, so a DATA frame behind it would wait. A ping goes
// out every PingInterval; a connection with no pong or other traffic for
// PongTimeout is dead and is replaced. Streams are keyed by (serviceId, streamId), V3
// connections by connectionId; stale ids are dropped.
//
// Flow control: the protocol has none. Each local connection has a queue of
// at most ConnBufferSize bytes toward its socket, drained by its own writer
// goroutine, so a slow local socket does not stall the WebSocket reader or
// other streams. When a queue is full, the reader waits for room (absorbing
// bursts) within one stall window shared by all connections (stallGate):
// however many local sockets stop reading, the tunnel waits one
// ConnStallTimeout, and each connection still full is reset alone. The
// queues' buffers of every session sharing a Limits (the agent) are counted
// against one byte budget; data that does not fit resets its connection.
// Limits also caps the connections across sessions and the local dials in
// flight, MaxConnections those of one tunnel. Control frames are sized to
// their content and queued within maxCtrlBytes; at that bound the reader
// stops reading until the writer has sent half. Log lines a peer can
// trigger are rate-limited by kind, never keyed or sized by peer input
// (ratelog.go).
//
// Destination mode dials the address mapped to the stream's service
// ("host:port" or "unix:/path") in the background, buffering early DATA in
// the same bounded queue. A service that is not mapped is refused with a
// reset and a warning; nothing else is ever dialled. A V1 peer (no service
// id) goes to the only mapped service, or, with several, to the only service
// the tunnel announced. Local EOF sends STREAM_RESET (V1/V2) or
// CONNECTION_RESET (V3); a received reset drains pending local writes
// (bounded by 10 s) before closing. Replies follow the peer's format (no
// service id to a V1 peer, connection ids only if its STREAM_START had one)
// and the schema of our own WebSocket: on 1.0 no service id, on 1.0 and 2.0
// no connection id, and a CONNECTION_START there is answered with
// STREAM_RESET, as a V2 destination does.
//
// Source mode binds one listener per service in New. Each accepted client
// becomes a STREAM_START, or in V3 a CONNECTION_START on the service's
// current stream, so many clients share one service at once. V1 and V2
// carry one client per stream: further clients of the same service wait
// until the current one ends. DestinationClientType "" (auto) speaks V3
// and falls back to V2 only on unambiguous evidence, DATA without a
// connection id on a stream started with one; a STREAM_RESET is none (the
// service sends one for every started stream when a destination connects),
// and a reset of a stream the destination never answered makes the source
// decide again (peerVersion). A negotiated 1.0 or 2.0 subprotocol caps the
// message format. Clients opened while the first stream of a V2 destination
// is starting may be reset once, before the fallback is learnt. Clients
// accepted before the destination connects are closed by the service's
// STREAM_RESET when it arrives. A client accepted while the
// tunnel is down (or before SERVICE_IDS arrived under 2.0/3.0) waits up to
// DialTimeout for it and is then closed.
//
// Secrets (access token, client token, proxy password) never appear in
// errors or logs.
package tunnel
