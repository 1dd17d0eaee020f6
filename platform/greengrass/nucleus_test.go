package greengrass

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// fakeNucleus is a stand-in for the Greengrass nucleus IPC server: a Unix socket
// that speaks event-stream RPC with the same codec. The test goroutine plays the
// nucleus' side of each connection through nucleusConn.
type fakeNucleus struct {
	path  string
	ln    net.Listener
	conns chan *nucleusConn
	wg    sync.WaitGroup
}

func newFakeNucleus(t *testing.T) *fakeNucleus {
	t.Helper()
	// Unix socket paths are short (108 bytes): t.TempDir() can be too long.
	dir, err := os.MkdirTemp("", "gg")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ipc.socket")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNucleus{path: path, ln: ln, conns: make(chan *nucleusConn, 4)}
	n.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(n.conns)
				return
			}
			n.conns <- &nucleusConn{t: t, c: c, enc: eventstream.NewEncoder(), dec: eventstream.NewDecoder()}
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		n.wg.Wait()
		for c := range n.conns {
			_ = c.c.Close()
		}
		_ = os.RemoveAll(dir)
	})
	return n
}

// accept returns the next client connection.
func (n *fakeNucleus) accept(t *testing.T) *nucleusConn {
	t.Helper()
	select {
	case c := <-n.conns:
		t.Cleanup(func() { _ = c.c.Close() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no client connected to the fake nucleus")
		return nil
	}
}

type nucleusConn struct {
	t   *testing.T
	c   net.Conn
	enc *eventstream.Encoder
	dec *eventstream.Decoder
}

func (n *nucleusConn) send(m message) {
	n.t.Helper()
	if err := n.enc.Encode(n.c, m.Encode()); err != nil {
		n.t.Fatalf("fake nucleus: send %s: %v", m.Type, err)
	}
}

func (n *nucleusConn) recv() message {
	n.t.Helper()
	_ = n.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := readMessage(n.c, n.dec)
	if err != nil {
		n.t.Fatalf("fake nucleus: recv: %v", err)
	}
	return m
}

// expectClosed waits for the client to close the socket.
func (n *nucleusConn) expectClosed() {
	n.t.Helper()
	_ = n.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if m, err := readMessage(n.c, n.dec); !errors.Is(err, io.EOF) {
		n.t.Fatalf("fake nucleus: want EOF, got %s %v", m.Type, err)
	}
}

// connect checks the Connect message and answers ConnectAck (accepted or not).
func (n *nucleusConn) connect(wantToken string, accept bool) {
	n.t.Helper()
	m := n.recv()
	if m.Type != typeConnect || m.StreamID != 0 || m.Version != protocolVersion {
		n.t.Fatalf("fake nucleus: want Connect on stream 0 with :version %s, got %s stream %d version %q",
			protocolVersion, m.Type, m.StreamID, m.Version)
	}
	var body struct {
		AuthToken string `json:"authToken"`
	}
	if err := json.Unmarshal(m.Payload, &body); err != nil || body.AuthToken != wantToken {
		n.t.Fatalf("fake nucleus: connect payload %q: want the SVCUID as authToken (err %v)", m.Payload, err)
	}
	ack := message{Type: typeConnectAck}
	if accept {
		ack.Flags = flagConnectionAccepted
	}
	n.send(ack)
}

// expectSubscribe checks a SubscribeToIoTCore request and returns its stream id.
func (n *nucleusConn) expectSubscribe(wantTopic string) int32 {
	n.t.Helper()
	m := n.recv()
	if m.Type != typeApplicationMessage || m.Operation != opSubscribeToIoTCore ||
		m.ModelType != modelSubscribeRequest || m.ContentType != contentTypeJSON || m.StreamID <= 0 {
		n.t.Fatalf("fake nucleus: want SubscribeToIoTCore request, got %+v", m)
	}
	var req map[string]any
	if err := json.Unmarshal(m.Payload, &req); err != nil {
		n.t.Fatalf("fake nucleus: subscribe payload: %v", err)
	}
	if req["topicName"] != wantTopic || req["qos"] != "1" || len(req) != 2 {
		n.t.Fatalf("fake nucleus: subscribe request %v: want topicName %q and qos \"1\"", req, wantTopic)
	}
	return m.StreamID
}

func (n *nucleusConn) respond(stream int32) {
	n.send(message{Type: typeApplicationMessage, StreamID: stream, ModelType: modelSubscribeResp,
		ContentType: contentTypeJSON, Payload: []byte(`{}`)})
}

func (n *nucleusConn) push(stream int32, topic string, payload []byte) {
	n.t.Helper()
	body, err := json.Marshal(map[string]any{"message": map[string]string{
		"topicName": topic, "payload": base64.StdEncoding.EncodeToString(payload)}})
	if err != nil {
		n.t.Fatal(err)
	}
	n.send(message{Type: typeApplicationMessage, StreamID: stream, ModelType: modelIoTCoreMessage,
		ContentType: contentTypeJSON, Payload: body})
}

// fail answers a stream with a modelled error, as the nucleus does for a
// throwing operation handler.
func (n *nucleusConn) fail(stream int32, model, text string) {
	n.t.Helper()
	body, _ := json.Marshal(map[string]string{"message": text})
	n.send(message{Type: typeApplicationError, Flags: flagTerminateStream, StreamID: stream,
		ModelType: model, ContentType: contentTypeJSON, Payload: body})
}

// ping sends Ping and waits for the PingResponse echoing its payload.
func (n *nucleusConn) ping(payload string) {
	n.t.Helper()
	n.send(message{Type: typePing, Payload: []byte(payload)})
	m := n.recv()
	if m.Type != typePingResponse || m.StreamID != 0 || string(m.Payload) != payload {
		n.t.Fatalf("fake nucleus: want PingResponse %q, got %s %q", payload, m.Type, m.Payload)
	}
}
