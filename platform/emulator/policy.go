package emulator

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// thingPolicy is the embedded broker's authorization on its mutual-TLS
// listener: the minimal AWS IoT Core policy of the README ("The AWS side"),
// with ${iot:Connection.Thing.ThingName} taken from the client
// certificate's CommonName.
//
//   - iot:Connect only with the thing name as client id, or one of the
//     client ids configured for that thing (Config.ClientIDs). Otherwise the
//     connection is closed without a CONNACK, as AWS IoT Core does.
//   - iot:Subscribe and iot:Receive only on the thing's own notify topic
//     (no wildcards). Another filter gets SUBACK 0x80.
//   - No iot:Publish, except to the topics of Config.PublishTopicFormats (the
//     README's extra statement for audit_topic): a device that publishes
//     elsewhere is disconnected, as AWS IoT Core disconnects an MQTT 3.1.1
//     client for an unauthorized publish.
//
// The plain listener (debugging only) is not restricted; neither are the
// emulator's own inline client and a client presenting the emulator's
// service certificate (CommonName serviceClientCN, what another emulator
// publishing with --mqtt-url ssl:// uses).
// serviceClientCN is the CommonName of the emulator's own client
// certificate, which publishes notifications to an external broker.
const serviceClientCN = "tunnel-emulator"

type thingPolicy struct {
	mqtt.HookBase
	topicFormat string
	clientIDs   map[string][]string
	publish     []string // topic formats a thing may publish to (%s: thing)
	log         *slog.Logger
}

func (h *thingPolicy) ID() string { return "thing-policy" }

func (h *thingPolicy) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

// thing returns the certificate CommonName of a mutual-TLS client; ok is
// false for clients the policy does not restrict.
func thingOf(cl *mqtt.Client) (thing string, restricted bool) {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok || cl.Net.Inline {
		return "", false
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", true // no identity: nothing is allowed
	}
	cn := certs[0].Subject.CommonName
	return cn, cn != serviceClientCN
}

func (h *thingPolicy) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	thing, restricted := thingOf(cl)
	if !restricted {
		return true
	}
	id := cl.ID
	if thing != "" && (id == thing || slices.Contains(h.clientIDs[thing], id)) {
		return true
	}
	h.log.Warn("mqtt connection refused by the thing policy: the client id must be the certificate's thing name "+
		"(or a client id configured for it); closing without CONNACK as AWS IoT Core does",
		attrThing, thing, "client_id", truncate(id, 128))
	_ = cl.Net.Conn.Close()
	return false
}

func (h *thingPolicy) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	thing, restricted := thingOf(cl)
	if !restricted {
		return true
	}
	own := strings.Replace(h.topicFormat, "%s", thing, 1)
	if !write && thing != "" && topic == own {
		return true
	}
	if write && thing != "" && slices.ContainsFunc(h.publish, func(f string) bool { return strings.Replace(f, "%s", thing, 1) == topic }) {
		return true
	}
	action := "iot:Subscribe/iot:Receive"
	if write {
		action = "iot:Publish (disconnecting the client)"
	}
	h.log.Warn("mqtt "+action+" refused by the thing policy: a thing may only subscribe to its own notify topic",
		attrThing, thing, "client_id", truncate(cl.ID, 128), "topic", truncate(topic, 256), "allowed", own)
	return false
}
