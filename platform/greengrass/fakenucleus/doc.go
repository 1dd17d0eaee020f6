// Package fakenucleus is a stand-in for the IPC server of the AWS IoT
// Greengrass v2 nucleus: a Unix socket that speaks event-stream RPC (package
// eventrpc), authenticates components by their SVCUID, authorizes
// SubscribeToIoTCore and PublishToIoTCore against each component's
// accessControl (the recipe's, loaded with AccessControlFromRecipe), and
// bridges them to a real MQTT broker through its own MQTT connection, as the
// nucleus does with the core device's connection to AWS IoT Core.
//
// It is test code: the agent's end-to-end Greengrass tests drive a real tunnel
// through it, and scripts/greengrass-sdk runs AWS's own IPC client (the npm
// aws-iot-device-sdk-v2 greengrasscoreipc client on aws-crt's native
// event-stream) against it, so that both sides of the conversation are not
// only ours. Nothing under cmd/tunnel-agent imports it.
//
// Behaviour follows the nucleus (aws-greengrass-nucleus MqttProxyIPCAgent and
// AuthorizationHandler, aws-iot-device-sdk-java-v2 event-stream-rpc-server,
// read through the team's code search):
//
//   - Connect: the :version header must be "0.1.0" and the JSON payload's
//     authToken a known SVCUID; otherwise ConnectAck without the
//     ConnectionAccepted flag, and the connection is closed. Ping is answered
//     with a PingResponse that echoes the payload and the non-":" headers.
//   - A request opens a stream; only the "operation" header is required: AWS's
//     JavaScript client sends neither service-model-type nor :content-type on
//     requests (the Python SDK sends both), and the nucleus does not look at them.
//   - SubscribeToIoTCore: topic missing -> InvalidArgumentsError "Topic is
//     required"; not allowed -> UnauthorizedError "Not Authorized" (the current
//     nucleus text; older ones said "Authorization failed with error ...");
//     qos missing or not "0"/"1" -> InvalidArgumentsError; broker refusal ->
//     ServiceError. Success: SubscribeToIoTCoreResponse {} (stream stays open),
//     then one IoTCoreMessage per MQTT message, payload base64 in JSON.
//   - PublishToIoTCore: the same checks plus "Payload is required"; success:
//     PublishToIoTCoreResponse {} with TerminateStream.
//   - Errors are ApplicationError + TerminateStream, :content-type
//     application/json, service-model-type the error's model, {"message": ...}.
//     An unknown operation gets an ApplicationError without a model.
//   - A client TerminateStream on a subscription unsubscribes it; nothing more
//     is sent on that stream.
//   - accessControl: exact topic, "*", MQTT wildcards in the resource (a
//     subscription filter must be covered by the resource filter), operation
//     name or "*"; "{iot:thingName}" in a resource is replaced only when
//     Config.InterpolateComponentConfiguration is set (nucleus >= 2.6 with that
//     nucleus setting), otherwise it stays literal and matches nothing real.
package fakenucleus
