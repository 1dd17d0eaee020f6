package tunnel

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// TestWSReader: binary messages are one byte stream; a text message ends it.
func TestWSReader(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for _, m := range []string{"ab", "", "cde"} {
			_ = ws.WriteMessage(websocket.BinaryMessage, []byte(m))
		}
		_ = ws.WriteMessage(websocket.TextMessage, []byte("text"))
		_, _, _ = ws.ReadMessage() // until the client closes
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(srv.URL, "http", "ws", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	r := newWSReader(ws, nil)
	got, err := io.ReadAll(io.LimitReader(r, 5))
	if err != nil || string(got) != "abcde" {
		t.Fatalf("read %q, %v", got, err)
	}
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, ErrTextMessage) {
		t.Fatalf("after text message: %v, want ErrTextMessage", err)
	}
}
