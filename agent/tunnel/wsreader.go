package tunnel

import (
	"io"
	"time"

	"github.com/gorilla/websocket"
)

// wsReader is an io.Reader over the binary messages of a WebSocket,
// concatenated: tunnel frames ignore message boundaries (PROTOCOL.md §5.1).
// A text message ends the stream with ErrTextMessage. Every message, ping
// and pong that arrives is told to the watchdog, if there is one; the
// reader sets no read deadline.
type wsReader struct {
	ws  *websocket.Conn
	r   io.Reader
	dog *watchdog
}

// newWSReader returns a reader over ws that answers pings and tells dog
// (nil: nobody) each time the peer is heard.
func newWSReader(ws *websocket.Conn, dog *watchdog) *wsReader {
	w := &wsReader{ws: ws, dog: dog}
	ws.SetPongHandler(func(string) error {
		w.heard()
		return nil
	})
	ws.SetPingHandler(func(data string) error {
		w.heard()
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if err != nil && err != websocket.ErrCloseSent {
			return err
		}
		return nil
	})
	return w
}

func (w *wsReader) heard() {
	if w.dog != nil {
		w.dog.hear()
	}
}

func (w *wsReader) Read(p []byte) (int, error) {
	for {
		if w.r == nil {
			typ, r, err := w.ws.NextReader()
			if err != nil {
				return 0, err
			}
			w.heard()
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
