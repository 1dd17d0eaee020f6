package greengrass

import "github.com/tunnel-agent/tunnel-agent/platform/greengrass/internal/eventrpc"

// Short names for the event-stream RPC layer (package eventrpc holds the facts).
type message = eventrpc.Message

const (
	typeApplicationMessage = eventrpc.TypeApplicationMessage
	typeApplicationError   = eventrpc.TypeApplicationError
	typePing               = eventrpc.TypePing
	typePingResponse       = eventrpc.TypePingResponse
	typeConnect            = eventrpc.TypeConnect
	typeConnectAck         = eventrpc.TypeConnectAck
	typeProtocolError      = eventrpc.TypeProtocolError
	typeInternalError      = eventrpc.TypeInternalError

	flagConnectionAccepted = eventrpc.FlagConnectionAccepted
	flagTerminateStream    = eventrpc.FlagTerminateStream

	hdrModelType   = eventrpc.HdrModelType
	hdrContentType = eventrpc.HdrContentType

	protocolVersion       = eventrpc.ProtocolVersion
	contentTypeJSON       = eventrpc.ContentTypeJSON
	opSubscribeToIoTCore  = eventrpc.OpSubscribeToIoTCore
	modelSubscribeRequest = eventrpc.ModelSubscribeRequest
	modelSubscribeResp    = eventrpc.ModelSubscribeResponse
	modelIoTCoreMessage   = eventrpc.ModelIoTCoreMessage
	modelUnauthorized     = eventrpc.ModelUnauthorized
	opPublishToIoTCore    = eventrpc.OpPublishToIoTCore
	modelPublishRequest   = eventrpc.ModelPublishRequest
	modelPublishResponse  = eventrpc.ModelPublishResponse
	ipcServiceMQTTProxy   = eventrpc.IPCServiceMQTTProxy

	// MaxMessageSize bounds what this client reads from the nucleus: an MQTT
	// payload (128 KiB at most in AWS IoT Core) base64-encoded inside JSON fits
	// well below it.
	MaxMessageSize = eventrpc.MaxMessageSize
)

var (
	readMessage = eventrpc.ReadMessage
	newEncoder  = eventrpc.NewEncoder
	newDecoder  = eventrpc.NewDecoder
)
