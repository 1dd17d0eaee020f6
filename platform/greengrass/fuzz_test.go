package greengrass

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// FuzzNucleusMessages feeds arbitrary bytes from "the nucleus" through the
// same path Run uses: size-checked event-stream decoding, RPC header parsing,
// ConnectAck check, then the session's message handling (pings answered,
// stream events decoded and delivered). It must never panic, never allocate
// past MaxMessageSize per message, and only deliver payloads of the notify topic.
func FuzzNucleusMessages(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = io.Copy(io.Discard, server) })
		defer func() {
			_ = client.Close()
			wg.Wait()
		}()
		s := &session{
			Source: NewSource(Config{ThingName: testThing}),
			c:      &ipcConn{c: client, dec: newDecoder(), enc: newEncoder(), timeout: DefaultWriteTimeout},
			log:    slog.New(slog.DiscardHandler),
			stream: 1,
			ready:  func() {},
		}
		s.deliver = func(p []byte) bool {
			if len(p) > MaxMessageSize {
				t.Fatalf("delivered %d bytes", len(p))
			}
			return true
		}
		defer func() {
			if s.retry != nil {
				s.retry.Stop()
			}
		}()
		r := bytes.NewReader(data)
		for i := 0; ; i++ {
			m, err := readMessage(r, s.c.dec)
			if err != nil {
				return
			}
			if i == 0 {
				_ = checkConnectAck(m)
				continue
			}
			if err := s.handle(m); err != nil {
				return
			}
		}
	})
}

// fuzzSeeds are conversations a nucleus could have with the client.
func fuzzSeeds(tb testing.TB) [][]byte {
	ack := message{Type: typeConnectAck, Flags: flagConnectionAccepted}
	resp := message{Type: typeApplicationMessage, StreamID: 1, ModelType: modelSubscribeResp,
		ContentType: contentTypeJSON, Payload: []byte(`{}`)}
	notify := func(topic, payload string) message {
		return message{Type: typeApplicationMessage, StreamID: 1, ModelType: modelIoTCoreMessage,
			ContentType: contentTypeJSON, Payload: fmt.Appendf(nil, `{"message":{"topicName":%q,"payload":%q}}`,
				topic, base64.StdEncoding.EncodeToString([]byte(payload)))}
	}
	unauthorized := message{Type: typeApplicationError, Flags: flagTerminateStream, StreamID: 1,
		ModelType: modelUnauthorized, ContentType: contentTypeJSON, Payload: []byte(`{"message":"denied"}`)}
	convs := [][]message{
		{ack, resp, notify(testTopic, `{"clientAccessToken":"x","clientMode":"destination","region":"us-east-1","services":["SSH"]}`)},
		{ack, resp, {Type: typePing, Payload: []byte("p")}, notify("other/topic", "x"), {Type: typePingResponse}},
		{ack, unauthorized},
		{ack, resp, {Type: typeApplicationMessage, StreamID: 1, Flags: flagTerminateStream}, notify(testTopic, "late")},
		{{Type: typeConnectAck}},
		{ack, {Type: typeApplicationError, Flags: flagTerminateStream, StreamID: 1, ContentType: "text/plain",
			Payload: []byte("InternalServerError")}},
		{ack, resp, {Type: typeProtocolError, Payload: []byte("bad")}},
	}
	var seeds [][]byte
	for _, conv := range convs {
		var buf bytes.Buffer
		for _, m := range conv {
			if err := newEncoder().Encode(&buf, m.Encode()); err != nil {
				tb.Fatal(err)
			}
		}
		seeds = append(seeds, buf.Bytes())
	}
	return seeds
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzNucleusMessages from
// fuzzSeeds when GREENGRASS_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("GREENGRASS_WRITE_CORPUS") != "1" {
		t.Skip("set GREENGRASS_WRITE_CORPUS=1 to regenerate the committed seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzNucleusMessages")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, seed := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
