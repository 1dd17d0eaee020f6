package emulator

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/batchconn"
)

// TestShutdownDuringBatch: a close frame sent while the writer has a batch
// open (it joins the batch) still reaches the client before the connection
// closes, so the client sees the close code, not an abnormal closure (1006),
// which the agent would take for a lost connection and retry.
func TestShutdownDuringBatch(t *testing.T) {
	tests := []struct {
		name  string
		batch bool
	}{
		{"no batch open", false},
		{"the writer's batch open", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peers := make(chan *peer, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
				if err != nil {
					t.Error(err)
					return
				}
				peers <- newPeer(conn, modeDest, "", "ch", nil)
			}))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv.Listener = batchconn.Listener{Listener: ln}
			srv.Start()
			defer srv.Close()
			c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p := <-peers
			if p.bc == nil {
				t.Fatal("the peer's connection is not a batchconn")
			}
			if tt.batch {
				p.bc.StartBatch() // as writeMsgs does; its EndBatch has not come yet
			}
			p.shutdown(closeNormal, "tunnel closed")
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, _, err = c.ReadMessage()
			if ce, ok := errors.AsType[*websocket.CloseError](err); !ok || ce.Code != closeNormal || ce.Text != "tunnel closed" {
				t.Fatalf("the client read %v, want close %d \"tunnel closed\"", err, closeNormal)
			}
		})
	}
}
