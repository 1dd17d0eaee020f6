package tunnel

import (
	"io"
	"time"

	"github.com/gorilla/websocket"
)

// wsReader is an io.Reader over the binary messages of a WebSocket,
// concatenated: tunnel frames ignore message boundaries (PROTOCOL.md §5.1).
// A text message ends the stream with ErrTextMessage. Each message that
// arrives pushes the read deadline to now+idle (at most once a second), so a
// connection with neither traffic nor pongs for idle fails its read.
type wsReader struct {
	ws       *websocket.Conn
	r        io.Reader
	idle     time.Duration
	extended time.Time
}

// newWSReader returns a reader over ws that declares the connection dead
// after idle without a message or pong.
func newWSReader(ws *websocket.Conn, idle time.Duration) *wsReader {
	w := &wsReader{ws: ws, idle: idle}
	w.extend(time.Now())
	ws.SetPongHandler(func(string) error {
		w.extend(time.Now())
		return nil
	})
	ws.SetPingHandler(func(data string) error {
		w.extend(time.Now())
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if err != nil && err != websocket.ErrCloseSent {
			return err
		}
		return nil
	})
	return w
}

func (w *wsReader) extend(now time.Time) {
	w.extended = now
	_ = w.ws.SetReadDeadline(now.Add(w.idle))
}

func (w *wsReader) Read(p []byte) (int, error) {
	for {
		if w.r == nil {
			typ, r, err := w.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if now := time.Now(); now.Sub(w.extended) > time.Second {
				w.extend(now)
			}
			if typ != websocket.BinaryMessage {
				return 0, ErrTextMessage
			}
			w.r = r
		}
		n, err := w.r.Read(p)
		if err == io.EOF {
			w.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}
