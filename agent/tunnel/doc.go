// Package tunnel is the AWS IoT Secure Tunneling data plane for both ends of a
// tunnel: the destination (the device agent, which dials local services) and
// the source (the operator's local proxy, which listens for local clients).
// The wire format is in package protocol; the protocol's rules, and the
// habits of real peers that this package copes with, are specified in
// protocol/PROTOCOL.md, which comments cite as PROTOCOL.md §N.
//
// A Session owns one WebSocket at a time to the tunneling service
// (wss://<endpoint>/tunnel?local-proxy-mode=..., subprotocols 3.0, 2.0 and
// 1.0 offered) and reconnects it with full-jitter exponential backoff, always
// with the same client token so the single-use access token stays valid. A
// 4xx handshake ends Run with ErrRejected and a *HandshakeError that says what
// to do; a normal close frame from the service (tunnel closed or expired)
// ends Run with nil. Every stream is reset when the WebSocket goes down.
//
// # Concurrency
//
// A link (link.go) is one WebSocket: it runs the reader and the writer
// goroutine and dispatches each message (dispatch.go) to its parts, each a
// type whose doc comment says what it owns and its lock order: the
// streamTable (streams.go), the link's streams and local connections under
// one mutex; destinationSide (destination.go), which answers starts by
// dialling; sourceSide (source.go), which turns accepted clients into
// starts; the writePath (writepath.go); and rateLog (ratelog.go), the log
// lines a peer can trigger.
//
// Goroutines per WebSocket (a link): one reader, which decodes frames and
// dispatches them and never waits for a write; one writer goroutine, which
// sends the pings and the frames queued by code that must not write itself;
// per local connection, one local reader (socket to tunnel; after it sent
// data it may go on in a fresh goroutine before it waits for the socket
// again, so that an idle connection does not hold the stack that writing
// TLS records grew: see readLocal), plus a local writer (tunnel to socket)
// only while bytes are queued for the socket or a drain is to finish (the
// WebSocket reader writes an idle socket directly; see connState in
// localqueue.go), plus a dialler in destination mode while the connection
// is dialled. Each has one owner that waits for it: the link waits for its
// reader and writer, then for every local connection, whose reader waits
// for the end of its write direction (the last local writer, or abort).
//
// The style notes' simple form is one writer goroutine per WebSocket, fed by
// a channel. The write path here is flat combining instead: a local reader
// queues its DATA frame and, when no one else is writing, writes what is
// queued itself, under the write mutex, batched into messages of at most
// 131076 bytes that leave in one system call (package batchconn); when the
// queue is full it writes a burst itself instead of parking once per frame.
// Commit 4787cae measured why, on the 2-core bench machine with
// scripts/bench: through a channel, every frame the writer took woke a
// parked reader and the frames went cache-cold in the queue. Readers writing
// for each other raised upload from 441 to 551 MB/s with 1 stream and 423 to
// 536 MB/s with 8 (+25%), cut the source side's extra CPU per byte at 8
// streams from 15% to 4-8%, and agent CPU per GiB from 0.89 to 0.83 s;
// download did not change (523 to 529 MB/s).
//
// The rules that keep it correct:
//
//   - The write path is one type, writePath (writepath.go), whose doc
//     comment states these invariants and the lock order; its entry points
//     are sendData and writeOneBurst (local readers), send and sendCtrl
//     (queue and wake), and writeAll (the writer goroutine).
//   - One goroutine writes data messages at a time: whoever holds the write
//     mutex (writePath.wmu), the writer goroutine or a local reader. Pings and the
//     close frame go through WriteControl, which gorilla/websocket allows
//     beside one writer.
//   - Frames leave in queue order: they are taken from the queue only under
//     the write mutex and written before it is released. Control frames from
//     the WebSocket reader (resets, refusals) go first.
//   - Nothing is left behind: the count of queued frames is raised after a
//     frame is queued, and every holder of the write mutex looks at it again
//     after unlocking.
//   - A local reader writes at most one burst per frame it sends, then leaves
//     the rest to the writer goroutine, so it never starves its own socket.
//   - The WebSocket reader never waits for a write: its frames go to a
//     control queue of at most 256 KiB; when that is full it stops reading
//     until the writer has sent half, and a peer that does not read for
//     PongTimeout meanwhile is dropped.
//   - Lock order: the source's startMu (sourceSide), then the link's
//     streamTable mu, then a connection's queue lock or the write mutex; the
//     write mutex is never held while taking the streamTable's mu, and
//     ctrlMu and the rate-limited log's mu are leaves.
//   - A STREAM_START, CONNECTION_START or STREAM_RESET is always the last
//     frame of its message: the C++ localproxy processes nothing after one of
//     those until the next message arrives, so a DATA frame behind it would
//     wait (PROTOCOL.md §9.1 item 1).
//   - Nothing waits on a closing link: once the link's context is done, a
//     sender that would wait for room gives up, and the link closes the
//     WebSocket, so nothing queued later is written.
//
// A ping goes out every PingInterval; a connection with no pong or other
// traffic for PongTimeout is dead and is replaced. The ping tick checks
// that (watchdog), with no read deadline: an idle link sets no timer
// besides its ticker. Streams are keyed by
// (serviceId, streamId), V3 connections by connectionId; stale ids are
// dropped.
//
// # Flow control
//
// The protocol has none. Each local connection has a queue of
// at most ConnBufferSize bytes toward its socket, drained by its own writer
// goroutine, so a slow local socket does not stall the WebSocket reader or
// other streams. The queue is a list of chunks of up to 64 KiB, each freed
// as soon as the socket took it (pool.go), so a connection holds about
// what it has queued. When a queue is full, the reader waits for room (absorbing
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
// # Memory
//
// A link holds its large buffers only while it uses them, taken from free
// lists of two shared by the process (pool.go, package batchconn): the
// WebSocket's write buffer for one message, the FrameReader's 192 KiB for
// a frame that does not fit its own 4 KiB, and the batch and read-ahead
// buffers of the TCP connection under TLS for a burst. An idle tunnel
// thus costs its TLS state, a few KiB of buffers and its goroutines; DATA
// frames and queue chunks come from free lists too. Limits.ReleaseIdle
// drops every free list (the agent's settling and quiet mode).
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
