package greengrass

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// ipcConn is the socket to the nucleus. send is the only way to write, under a
// mutex, one whole encoded message per Write, each with a deadline.
type ipcConn struct {
	c       net.Conn
	dec     *eventstream.Decoder
	timeout time.Duration

	mu  sync.Mutex
	enc *eventstream.Encoder
	buf bytes.Buffer
}

func dial(ctx context.Context, cfg Config) (*ipcConn, error) {
	d := net.Dialer{Timeout: cfg.HandshakeTimeout}
	c, err := d.DialContext(ctx, "unix", cfg.SocketPath)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w: check that the Greengrass nucleus is running "+
			"and that this process runs as its component", ErrConnect, cfg.SocketPath, err)
	}
	return &ipcConn{
		c:       c,
		dec:     newDecoder(),
		timeout: cfg.WriteTimeout,
		enc:     newEncoder(),
	}, nil
}

func (w *ipcConn) send(m message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Reset()
	if err := w.enc.Encode(&w.buf, m.Encode()); err != nil {
		return fmt.Errorf("encoding %s: %w", m.Type, err)
	}
	if err := w.c.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	if _, err := w.c.Write(w.buf.Bytes()); err != nil {
		return fmt.Errorf("%w: sending %s: %w", ErrConnectionLost, m.Type, err)
	}
	return nil
}

// read returns the next message; only the reader goroutine calls it.
func (w *ipcConn) read() (message, error) { return readMessage(w.c, w.dec) }

func (w *ipcConn) close() error { return w.c.Close() }

// connectMessage is the Connect message carrying the SVCUID.
func connectMessage(authToken string) (message, error) {
	payload, err := json.Marshal(struct {
		AuthToken string `json:"authToken"`
	}{authToken})
	if err != nil {
		return message{}, fmt.Errorf("encoding connect payload: %w", err)
	}
	return message{Type: typeConnect, Version: protocolVersion, Payload: payload}, nil
}

// subscribeMessage opens stream id with a SubscribeToIoTCore request at QoS 1.
func subscribeMessage(streamID int32, topic string) (message, error) {
	payload, err := json.Marshal(struct {
		TopicName string `json:"topicName"`
		QoS       string `json:"qos"`
	}{topic, "1"})
	if err != nil {
		return message{}, fmt.Errorf("encoding subscribe request: %w", err)
	}
	return message{
		Type:        typeApplicationMessage,
		StreamID:    streamID,
		Operation:   opSubscribeToIoTCore,
		ModelType:   modelSubscribeRequest,
		ContentType: contentTypeJSON,
		Payload:     payload,
	}, nil
}
