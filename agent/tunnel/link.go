package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/batchconn"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// closeGrace bounds how long a closing link waits to send its close frame.
const closeGrace = time.Second

// Log attribute keys.
const (
	logService   = "service"
	logStream    = "stream_id"
	logConn      = "connection_id"
	logLocal     = "local_addr"
	logErr       = "err"
	logType      = "type"
	logChannel   = "channel_id"
	logSubproto  = "subprotocol"
	logBytesIn   = "bytes_in"
	logBytesOut  = "bytes_out"
	logDelay     = "delay"
	logListen    = "listen_addr"
	logReason    = "reason"
	logServiceID = "service_ids"
	logAttempt   = "attempt"
)

// errTunnelClosed: the service closed the WebSocket normally (the tunnel was
// closed or expired).
var errTunnelClosed = errors.New("the tunnel service closed the connection")

// frameBuf is a pooled buffer holding one encoded frame in data.
type frameBuf struct {
	buf  []byte
	data []byte
	// last: the frame ends its WebSocket message (see endsMessage).
	last bool
	// budget: the frame counts in this link's budget of frames out
	// (writePath.budget); putFrame gives its place back.
	budget chan struct{}
}

// payload is the part of buf a local reader reads into: a DATA frame's
// payload, behind the headroom EncodeData writes the header into.
func (f *frameBuf) payload() []byte {
	return f.buf[protocol.DataHeadroom : protocol.DataHeadroom+protocol.MaxPayload]
}

// endsMessage reports whether a frame of type t must be the last one of its
// WebSocket message. The C++ localproxy stops processing what it has read
// after a STREAM_START (and, waiting for a stream, after a CONNECTION_START)
// or a STREAM_RESET, and resumes only when the next message arrives: a DATA
// frame behind one of those in the same message would wait for more
// traffic, which a client waiting for its reply never sends.
func endsMessage(t protocol.Type) bool {
	switch t {
	case protocol.TypeStreamStart, protocol.TypeConnectionStart, protocol.TypeStreamReset:
		return true
	}
	return false
}

const frameBufSize = protocol.DataHeadroom + protocol.MaxPayload + 256

var framePool = newFreeList(maxFreeFrames, func() *frameBuf { return &frameBuf{buf: make([]byte, frameBufSize)} })

func getFrame() *frameBuf { return framePool.Get() }

// putFrame returns a pooled frame; a frame sized to its content (see
// encodeSmall) is left to the garbage collector.
func putFrame(f *frameBuf) {
	f.data, f.last = nil, false
	if f.budget != nil {
		<-f.budget
		f.budget = nil
	}
	if cap(f.buf) == frameBufSize {
		framePool.Put(f)
	}
}

// encodeSmall returns m as a frame of its own size, not a pooled
// frameBufSize buffer: control frames wait in a queue that a peer can fill,
// and must cost what they hold. nil (logged) if m cannot be encoded.
func encodeSmall(m *protocol.Message, log *slog.Logger) *frameBuf {
	b, err := protocol.AppendFrame(make([]byte, 0, protocol.LengthSize+m.Size()), m)
	if err != nil {
		log.Error("cannot encode a tunnel message", logType, m.Type, logErr, err)
		return nil
	}
	return &frameBuf{data: b, last: endsMessage(m.Type)}
}

// link is one WebSocket connection of a Session. It owns the WebSocket's
// lifecycle (serve: its reader, its writer goroutine and pings, the wait for
// every local connection) and dispatches what the reader decodes to its
// parts: the streams over it (streamTable), the destination or source role
// (destinationSide, sourceSide) and the write path. Everything is reset
// when the link ends. Each part's doc comment says what it owns and its
// lock order.
type link struct {
	s         *Session
	ws        *websocket.Conn
	bc        *batchconn.Conn // nil if the connection is not ours
	log       *slog.Logger
	version   protocol.Version // of the negotiated subprotocol
	channelID string

	ctx    context.Context
	cancel context.CancelCauseFunc
	w      *writePath     // the WebSocket's data messages (set by serve)
	wg     sync.WaitGroup // local connections

	rate    rateLog
	carried atomic.Bool // a DATA frame went either way (the link worked)
	// pings counts the ping ticks: a local reader moves to a fresh
	// goroutine at most once per tick, after its first (see readLocal).
	pings atomic.Uint64
	gate  stallGate // of the reader's waits for full local queues
	dog   *watchdog // the peer's silence (set by serve)

	streams *streamTable    // streams and local connections (its mu)
	dest    destinationSide // destination mode: answers starts
	src     sourceSide      // source mode: accepted clients become starts
}

func newLink(s *Session, ws *websocket.Conn, channelID string) *link {
	v, ok := protocol.VersionOf(ws.Subprotocol())
	if !ok {
		v = protocol.V3
	}
	log := s.log.With(logChannel, channelID)
	l := &link{
		s: s, ws: ws, bc: batchconn.Of(ws), version: v, channelID: channelID, log: log,
		rate:    rateLog{log: log},
		gate:    stallGate{stall: s.cfg.ConnStallTimeout},
		streams: newStreamTable(log, s.cfg.Mode == ModeSource && s.version == 0),
	}
	l.dest.l, l.src.l = l, l
	return l
}

// serve runs the link until the WebSocket fails or ctx ends, then resets
// every stream. It returns why the link ended.
func (l *link) serve(ctx context.Context) error {
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	l.w = newWritePath(l.ctx, l.cancel, l.ws, l.bc, l.log, l.s.cfg.PongTimeout)
	l.dog = newWatchdog(l.s.cfg.PongTimeout, l.cancel)
	defer l.dog.close()
	var g sync.WaitGroup
	writerDone := make(chan struct{})
	g.Go(func() { l.cancel(l.readLoop()) })
	g.Go(func() {
		defer close(writerDone)
		l.cancel(l.writeLoop(ctx))
	})
	if l.version == protocol.V1 || l.s.cfg.Mode == ModeDestination {
		l.s.setLink(l)
	}
	<-l.ctx.Done()
	l.s.clearLink(l)
	if ctx.Err() != nil {
		// Let the writer send its close frame, but not for long.
		t := time.NewTimer(closeGrace)
		select {
		case <-writerDone:
		case <-t.C:
		}
		t.Stop()
	}
	_ = l.ws.Close()
	g.Wait()
	l.streams.abortAll("the tunnel WebSocket closed")
	l.wg.Wait()
	l.rate.flush(time.Now(), true)
	return context.Cause(l.ctx)
}

func (l *link) readLoop() error {
	fr := protocol.NewLendingFrameReader(newWSReader(l.ws, l.dog), readBufs)
	defer fr.Release()
	var m protocol.Message
	for {
		err := fr.ReadMessage(&m)
		switch {
		case err == nil:
			l.dispatch(&m)
		case errors.Is(err, protocol.ErrMalformed), errors.Is(err, protocol.ErrPayloadTooLarge):
			l.rate.warn(warnMalformed, "skipping a tunnel message that cannot be decoded", logErr, err)
		default:
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
				return fmt.Errorf("%w (%s)", errTunnelClosed, ce.Text)
			}
			return fmt.Errorf("read from tunnel: %w", err)
		}
	}
}

// writeLoop is the writer goroutine: it sends the pings and, when woken,
// the frames queued by send and sendCtrl, which do not write themselves
// (writePath.writeAll); local readers write their DATA themselves. On
// parent cancellation it sends a close frame.
func (l *link) writeLoop(parent context.Context) error {
	ping := time.NewTicker(l.s.cfg.PingInterval)
	defer ping.Stop()
	l.dog.check(l.s.cfg.PingInterval)
	for {
		select {
		case <-l.ctx.Done():
			if parent.Err() != nil {
				msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
				_ = l.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace))
				if l.bc != nil {
					// A local reader may hold a batch open: the close frame
					// joined it, and must leave before the socket closes.
					_ = l.bc.Flush()
				}
			}
			return context.Cause(l.ctx)
		case <-ping.C:
			l.pings.Add(1)
			l.dog.check(l.s.cfg.PingInterval)
			l.rate.flush(time.Now(), false)
			payload := strconv.AppendInt(nil, time.Now().UnixMilli(), 10)
			if err := l.ws.WriteControl(websocket.PingMessage, payload, time.Now().Add(l.s.cfg.PongTimeout)); err != nil {
				return fmt.Errorf("send ping: %w", err)
			}
		case <-l.w.wake:
			if err := l.w.writeAll(); err != nil {
				return err
			}
		}
	}
}
