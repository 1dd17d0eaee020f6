// Package greengrass is a small AWS IoT Greengrass v2 IPC client that feeds the
// tunnel notify topic to the agent when tunnel-agent runs as a Greengrass
// component ("tunnel-agent greengrass").
//
// A Greengrass core device already holds the MQTT connection under the thing's
// name; a second connection with that client id would knock the nucleus off. So
// instead of paho, the agent asks the nucleus to subscribe for it, over the
// component IPC socket, and gets the notifications as IPC stream events.
// [Source] implements the agent's notify.Source interface, and its Publish
// sends the agent's audit events to AWS IoT Core the same way
// (PublishToIoTCore).
//
// # Wire protocol
//
// The IPC transport is event-stream RPC over the Unix socket named by
// AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT. Framing (prelude, headers,
// CRCs) is the AWS event-stream codec of github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream;
// this package only adds a size cap before decoding (the codec trusts the length
// prefix) and the RPC layer on top:
//
//   - every message carries the int32 headers ":message-type" (ApplicationMessage 0,
//     ApplicationError 1, Ping 2, PingResponse 3, Connect 4, ConnectAck 5,
//     ProtocolError 6, InternalError 7), ":message-flags" (ConnectionAccepted 1,
//     TerminateStream 2) and ":stream-id" (0 for connection-level messages);
//   - the client sends Connect with ":version" "0.1.0" and the JSON payload
//     {"authToken": SVCUID}; the nucleus answers ConnectAck, with the
//     ConnectionAccepted flag when the token is valid;
//   - an operation opens a stream: the client picks the next stream id (1, 2, ...),
//     sends an ApplicationMessage with the string headers "operation"
//     ("aws.greengrass#SubscribeToIoTCore"), "service-model-type"
//     ("aws.greengrass#SubscribeToIoTCoreRequest") and ":content-type"
//     ("application/json"), payload {"topicName": ..., "qos": "1"};
//   - the nucleus answers on that stream with the initial response
//     ("aws.greengrass#SubscribeToIoTCoreResponse", empty object) and then one
//     ApplicationMessage per MQTT message, model "aws.greengrass#IoTCoreMessage",
//     payload {"message": {"topicName": ..., "payload": base64}};
//   - a failed operation is an ApplicationError with the TerminateStream flag and
//     the error's model name, e.g. "aws.greengrass#UnauthorizedError" with
//     {"message": "Authorization failed with error ..."}; an unmodelled failure is
//     text/plain "InternalServerError";
//   - PublishToIoTCore opens its own stream the same way ("aws.greengrass#PublishToIoTCore",
//     payload {"topicName", "qos": "1", "payload": base64}); the nucleus answers
//     "aws.greengrass#PublishToIoTCoreResponse" {} with TerminateStream, or an error;
//   - either side may send Ping (stream 0); the peer answers PingResponse.
//
// AWS's JavaScript greengrasscoreipc client (run against the test nucleus by
// scripts/greengrass-sdk) sends requests with only the "operation" header: no
// service-model-type, no :content-type; the Python SDK sends both. The nucleus
// requires neither; this client sends them, like the Python SDK. The current
// nucleus answers a refused operation with UnauthorizedError {"message": "Not
// Authorized"}; older ones said "Authorization failed with error ...": this
// client keys on the model name only.
//
// Sources relied on (read through the team's code search, not copied):
// aws-iot-device-sdk-python-v2 awsiot/eventstreamrpc.py (connect amendment with
// authToken, :version, service-model-type and content-type checks, first message
// of a stream is the response); awslabs/aws-c-event-stream
// source/event_stream_rpc.c and event_stream_rpc_client.c (header names, int32
// header types, stream ids counting up from latest+1, ConnectAck handling, stream
// id 0 only for connection messages); aws-iot-device-sdk-java-v2
// GreengrassConnectMessageSupplier and event-stream-rpc-server
// OperationContinuationHandler (errors sent as ApplicationError +
// TerminateStream, "InternalServerError" text); aws-greengrass-nucleus
// MqttProxyIPCAgent (authorization of SubscribeToIoTCore per topic, UnauthorizedError
// and ServiceError texts, IoTCoreMessage forwarding); the Python SDK's
// greengrasscoreipc model (QOS enum "0"/"1"); aws-greengrass-lite (IoTCoreMessage
// payload base64-encoded inside {"message": {...}}); the
// Greengrass v2 developer guide pages "Publish/subscribe AWS IoT Core MQTT
// messages" and "Use interprocess communication".
//
// Choices where the sources are silent: a message from the nucleus larger than
// [MaxMessageSize] ends the connection; the ConnectAck must arrive within
// Config.HandshakeTimeout (default 10 s); Ping is answered with an empty
// PingResponse; a ServiceError (or any non-authorization failure) of the
// subscription, or the stream being closed by the nucleus, is retried on a new
// stream with jittered exponential backoff (the nucleus marks a component BROKEN
// after three errored exits, so a transient cloud-side failure must not end the
// process); an UnauthorizedError is final, since only a new deployment can fix it;
// a lost socket is final, so that the agent exits non-zero and the nucleus
// restarts it with a fresh SVCUID.
package greengrass
