package fakenucleus

import (
	"encoding/base64"
	"encoding/json"

	rpc "github.com/tunnel-agent/tunnel-agent/platform/greengrass/internal/eventrpc"
)

// Texts of the nucleus' MqttProxyIPCAgent.
const (
	textUnauthorized = "Not Authorized"
	textNoTopic      = "Topic is required"
	textNoQoS        = "QoS is required"
	textBadQoS       = "Invalid QoS value"
	textNoPayload    = "Payload is required"
)

// ioTCoreRequest is the JSON of SubscribeToIoTCoreRequest and
// PublishToIoTCoreRequest (payload: base64, as the model's blob).
type ioTCoreRequest struct {
	TopicName *string `json:"topicName"`
	QoS       *string `json:"qos"`
	Payload   *[]byte `json:"payload"`
}

// check validates a request the way the nucleus does: topic, then
// authorization. It answers the error itself and returns false on failure.
func (c *conn) check(st *stream, payload []byte) (ioTCoreRequest, bool) {
	var req ioTCoreRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		c.reply(st, rpc.Message{Type: rpc.TypeApplicationError, Flags: rpc.FlagTerminateStream,
			ContentType: rpc.ContentTypeText, Payload: []byte("InternalServerError")})
		return req, false
	}
	if req.TopicName == nil {
		c.fail(st, rpc.ModelInvalidArguments, textNoTopic)
		return req, false
	}
	if !c.n.authorized(c.comp, rpc.IPCServiceMQTTProxy, st.operation, *req.TopicName) {
		c.n.log.Info("fakenucleus: "+textUnauthorized, "error", "Principal "+c.comp.Name+
			" is not authorized to perform "+rpc.IPCServiceMQTTProxy+":"+st.operation+
			" on resource "+headerSafe(*req.TopicName))
		c.fail(st, rpc.ModelUnauthorized, textUnauthorized)
		return req, false
	}
	return req, true
}

// qos validates the request's QoS, answering the error on failure.
func (c *conn) qos(st *stream, req ioTCoreRequest) (byte, bool) {
	switch {
	case req.QoS == nil:
		c.fail(st, rpc.ModelInvalidArguments, textNoQoS)
		return 0, false
	case *req.QoS == "0":
		return 0, true
	case *req.QoS == "1":
		return 1, true
	default:
		c.fail(st, rpc.ModelInvalidArguments, textBadQoS+": "+headerSafe(*req.QoS))
		return 0, false
	}
}

// mqttMessage is the JSON of the model's MQTTMessage inside IoTCoreMessage.
type mqttMessage struct {
	TopicName     string `json:"topicName"`
	Payload       string `json:"payload"`
	Retain        bool   `json:"retain"`
	PayloadFormat string `json:"payloadFormat"`
}

func (c *conn) subscribe(st *stream, payload []byte) {
	req, ok := c.check(st, payload)
	if !ok {
		return
	}
	qos, ok := c.qos(st, req)
	if !ok {
		return
	}
	// Messages may only follow the response: forwarding starts once it is sent.
	ready := make(chan struct{})
	st.sub = &subscription{filter: *req.TopicName, forward: func(topic string, p []byte) {
		<-ready
		c.replyJSON(st, rpc.TypeApplicationMessage, 0, rpc.ModelIoTCoreMessage,
			map[string]mqttMessage{"message": {TopicName: topic,
				Payload: base64.StdEncoding.EncodeToString(p), PayloadFormat: "0"}})
	}}
	if err := c.n.router.add(st.sub, qos); err != nil {
		close(ready)
		c.fail(st, rpc.ModelServiceError, "Subscribe to topic "+*req.TopicName+" failed with error "+err.Error())
		return
	}
	c.replyJSON(st, rpc.TypeApplicationMessage, 0, rpc.ModelSubscribeResponse, struct{}{})
	close(ready)
}

func (c *conn) publish(st *stream, payload []byte) {
	req, ok := c.check(st, payload)
	if !ok {
		return
	}
	if req.Payload == nil {
		c.fail(st, rpc.ModelInvalidArguments, textNoPayload)
		return
	}
	qos, ok := c.qos(st, req)
	if !ok {
		return
	}
	if err := c.n.cfg.MQTT.Publish(*req.TopicName, qos, *req.Payload); err != nil {
		c.fail(st, rpc.ModelServiceError, "Publish to topic "+*req.TopicName+" failed: "+err.Error())
		return
	}
	c.replyJSON(st, rpc.TypeApplicationMessage, rpc.FlagTerminateStream, rpc.ModelPublishResponse, struct{}{})
}
