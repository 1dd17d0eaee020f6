package greengrass

import (
	"context"
	"encoding/json"
	"fmt"
)

// maxPendingPublishes bounds the PublishToIoTCore requests awaiting the
// nucleus' answer; beyond it Publish fails at once with ErrPublish.
const maxPendingPublishes = 64

// MaxPublishPayload is AWS IoT Core's message size limit; Publish refuses
// larger payloads before they reach the nucleus.
const MaxPublishPayload = 128 << 10

// pubRequest is one Publish call handed to the session.
type pubRequest struct {
	topic   string
	payload []byte
	done    chan error // buffered: the session never blocks on it
}

// Publish sends payload to the AWS IoT Core topic at QoS 1 through the
// nucleus' MQTT connection (PublishToIoTCore), for the agent's audit events.
// It waits until Run is connected and the nucleus has answered, or ctx ends.
// The component's accessControl must allow aws.greengrass#PublishToIoTCore on
// topic (the recipe allows tunnel-agent/+/events); otherwise the error wraps
// ErrUnauthorized. Safe for concurrent use.
func (s *Source) Publish(ctx context.Context, topic string, payload []byte) error {
	if topic == "" {
		return fmt.Errorf("%w: empty topic", ErrPublish)
	}
	if len(payload) > MaxPublishPayload {
		return fmt.Errorf("%w: payload of %d bytes exceeds AWS IoT Core's %d", ErrPublish, len(payload), MaxPublishPayload)
	}
	req := &pubRequest{topic: topic, payload: payload, done: make(chan error, 1)}
	select {
	case s.pubs <- req:
	case <-ctx.Done():
		return fmt.Errorf("%w: not connected to the nucleus: %w", ErrPublish, ctx.Err())
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: no answer from the nucleus: %w", ErrPublish, ctx.Err())
	}
}

// publishMessage opens stream id with a PublishToIoTCore request at QoS 1.
// The payload is a blob in the model: base64 in the JSON.
func publishMessage(streamID int32, topic string, payload []byte) (message, error) {
	if payload == nil {
		payload = []byte{} // the nucleus refuses a request without payload
	}
	body, err := json.Marshal(struct {
		TopicName string `json:"topicName"`
		QoS       string `json:"qos"`
		Payload   []byte `json:"payload"`
	}{topic, "1", payload})
	if err != nil {
		return message{}, fmt.Errorf("encoding publish request: %w", err)
	}
	return message{Type: typeApplicationMessage, StreamID: streamID, Operation: opPublishToIoTCore,
		ModelType: modelPublishRequest, ContentType: contentTypeJSON, Payload: body}, nil
}

// startPublish sends req on a new stream. An error ends the session.
func (s *session) startPublish(req *pubRequest) error {
	if len(s.pending) >= maxPendingPublishes {
		req.done <- fmt.Errorf("%w: %d publishes already wait for the nucleus", ErrPublish, maxPendingPublishes)
		return nil
	}
	s.lastStream++
	m, err := publishMessage(s.lastStream, req.topic, req.payload)
	if err != nil {
		req.done <- fmt.Errorf("%w: %w", ErrPublish, err)
		return nil
	}
	if err := s.c.send(m); err != nil {
		req.done <- err
		return err
	}
	s.pending[s.lastStream] = req
	return nil
}

// finishPublish answers req with the nucleus' response on its stream.
func (s *session) finishPublish(m message, req *pubRequest) {
	delete(s.pending, m.StreamID)
	switch {
	case m.Type == typeApplicationMessage && m.ModelType == modelPublishResponse:
		req.done <- nil
	case m.Type == typeApplicationError && m.ModelType == modelUnauthorized:
		_, text := errorDetails(m)
		req.done <- fmt.Errorf("%w: %s on %s (%s): the component's accessControl must allow "+
			"%s for %s on that topic (the recipe allows %q; see configs/greengrass/README.md)",
			ErrUnauthorized, m.ModelType, sanitize(req.topic), text, opPublishToIoTCore,
			ipcServiceMQTTProxy, RecipeAuditResource)
	case m.Type == typeApplicationError:
		typ, text := errorDetails(m)
		req.done <- fmt.Errorf("%w: %s: %s", ErrPublish, typ, text)
	default:
		req.done <- fmt.Errorf("%w: unexpected answer %s %q", ErrPublish, m.Type, sanitize(m.ModelType))
	}
	if !m.Terminates() {
		s.log.Debug("greengrass ipc: publish answer without TerminateStream", logKeyStream, m.StreamID)
	}
}

// failPending answers every waiting Publish when the session ends.
func (s *session) failPending() {
	for id, req := range s.pending {
		req.done <- fmt.Errorf("%w: %w", ErrPublish, ErrConnectionLost)
		delete(s.pending, id)
	}
}
