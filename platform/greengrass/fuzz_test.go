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
	ack := message{typ: typeConnectAck, flags: flagConnectionAccepted}
	resp := message{typ: typeApplicationMessage, streamID: 1, modelType: modelSubscribeResp,
		contentType: contentTypeJSON, payload: []byte(`{}`)}
	notify := func(topic, payload string) message {
		return message{typ: typeApplicationMessage, streamID: 1, modelType: modelIoTCoreMessage,
			contentType: contentTypeJSON, payload: fmt.Appendf(nil, `{"message":{"topicName":%q,"payload":%q}}`,
				topic, base64.StdEncoding.EncodeToString([]byte(payload)))}
	}
	unauthorized := message{typ: typeApplicationError, flags: flagTerminateStream, streamID: 1,
		modelType: modelUnauthorized, contentType: contentTypeJSON, payload: []byte(`{"message":"denied"}`)}
	convs := [][]message{
		{ack, resp, notify(testTopic, `{"clientAccessToken":"x","clientMode":"destination","region":"us-east-1","services":["SSH"]}`)},
		{ack, resp, {typ: typePing, payload: []byte("p")}, notify("other/topic", "x"), {typ: typePingResponse}},
		{ack, unauthorized},
		{ack, resp, {typ: typeApplicationMessage, streamID: 1, flags: flagTerminateStream}, notify(testTopic, "late")},
		{{typ: typeConnectAck}},
		{ack, {typ: typeApplicationError, flags: flagTerminateStream, streamID: 1, contentType: "text/plain",
			payload: []byte("InternalServerError")}},
		{ack, resp, {typ: typeProtocolError, payload: []byte("bad")}},
	}
	var seeds [][]byte
	for _, conv := range convs {
		var buf bytes.Buffer
		for _, m := range conv {
			if err := newEncoder().Encode(&buf, m.encode()); err != nil {
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
