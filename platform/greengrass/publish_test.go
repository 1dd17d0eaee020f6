package greengrass

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// publishAsync runs Publish in the background.
func publishAsync(src *Source, topic string, payload []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- src.Publish(ctx, topic, payload)
	}()
	return done
}

// expectPublish checks a PublishToIoTCore request and returns its stream.
func (n *nucleusConn) expectPublish(wantTopic, wantPayloadB64 string) int32 {
	n.t.Helper()
	m := n.recv()
	if m.Type != typeApplicationMessage || m.Operation != opPublishToIoTCore || m.StreamID <= 0 {
		n.t.Fatalf("fake nucleus: want PublishToIoTCore, got %+v", m)
	}
	var req map[string]any
	if err := json.Unmarshal(m.Payload, &req); err != nil {
		n.t.Fatal(err)
	}
	if req["topicName"] != wantTopic || req["qos"] != "1" || req["payload"] != wantPayloadB64 {
		n.t.Fatalf("fake nucleus: publish request %v", req)
	}
	return m.StreamID
}

func TestSourcePublish(t *testing.T) {
	const audit = "tunnel-agent/pi-1/events"
	fake := newFakeNucleus(t)
	rs := startSource(t, fake.path, nil)
	nc := fake.accept(t)
	nc.connect(testToken, true)
	sub := nc.expectSubscribe(testTopic)
	nc.respond(sub)
	rs.waitReady(t)

	done := publishAsync(rs.src, audit, []byte{0, 1, 0xff})
	st := nc.expectPublish(audit, "AAH/")
	if st <= sub {
		t.Errorf("publish stream %d not after the subscription's %d", st, sub)
	}
	nc.send(message{Type: typeApplicationMessage, Flags: flagTerminateStream, StreamID: st,
		ModelType: modelPublishResponse, ContentType: contentTypeJSON, Payload: []byte(`{}`)})
	if err := <-done; err != nil {
		t.Fatalf("Publish = %v", err)
	}

	for _, tt := range []struct {
		model, text string
		want        error
		mention     string
	}{
		{modelUnauthorized, "Not Authorized", ErrUnauthorized, RecipeAuditResource},
		{"aws.greengrass#ServiceError", "Publish to topic failed: spooler full", ErrPublish, "spooler full"},
	} {
		done := publishAsync(rs.src, audit, nil)
		nc.fail(nc.expectPublish(audit, ""), tt.model, tt.text)
		err := <-done
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("Publish refused with %s = %v, want %v naming %q", tt.model, err, tt.want, tt.mention)
		}
	}

	// A message on the subscription still arrives between publishes.
	nc.push(sub, testTopic, []byte("n"))
	if got := rs.waitDelivered(t); string(got) != "n" {
		t.Errorf("delivered %q", got)
	}

	// The socket goes while a publish waits: it fails, and so does Run.
	done = publishAsync(rs.src, audit, []byte("x"))
	nc.expectPublish(audit, "eA==")
	_ = nc.c.Close()
	if err := <-done; !errors.Is(err, ErrPublish) || !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Publish when the socket is lost = %v", err)
	}
	if err := rs.waitDone(t); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Run = %v", err)
	}
}

func TestPublishNotRunning(t *testing.T) {
	src := NewSource(Config{SocketPath: "/nonexistent", AuthToken: testToken, ThingName: testThing})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := src.Publish(ctx, "t", nil); !errors.Is(err, ErrPublish) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish without Run = %v", err)
	}
	if err := src.Publish(context.Background(), "", nil); !errors.Is(err, ErrPublish) {
		t.Fatalf("Publish with an empty topic = %v", err)
	}
	if err := src.Publish(context.Background(), "t", make([]byte, MaxPublishPayload+1)); !errors.Is(err, ErrPublish) {
		t.Fatalf("Publish of a payload over the limit = %v", err)
	}
}
