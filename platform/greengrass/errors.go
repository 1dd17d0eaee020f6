package greengrass

import (
	"errors"

	"github.com/tunnel-agent/tunnel-agent/platform/greengrass/internal/eventrpc"
)

// Errors returned by ConfigFromEnv and Source.Run. Check them with errors.Is.
var (
	// ErrNotGreengrass: the process was not started by a Greengrass nucleus.
	ErrNotGreengrass = errors.New("not running as a greengrass component")
	// ErrConfig: a Config field is missing or malformed.
	ErrConfig = errors.New("invalid greengrass ipc configuration")
	// ErrConnect: the IPC socket could not be reached or the handshake did not finish.
	ErrConnect = errors.New("cannot connect to the greengrass nucleus ipc socket")
	// ErrConnectRejected: the nucleus refused the SVCUID auth token.
	ErrConnectRejected = errors.New("greengrass nucleus rejected the ipc connection")
	// ErrUnauthorized: the component's accessControl does not allow the operation
	// (the notify topic subscription, or a publish).
	ErrUnauthorized = errors.New("greengrass nucleus refused the ipc operation (accessControl)")
	// ErrConnectionLost: the nucleus closed the socket or it failed.
	ErrConnectionLost = errors.New("greengrass nucleus ipc connection lost")
	// ErrProtocol: the nucleus sent something this client does not understand,
	// or reported a protocol/internal error for the whole connection.
	ErrProtocol = eventrpc.ErrProtocol
	// ErrPublish: a Publish did not reach AWS IoT Core (not connected, the
	// nucleus failed it, or too many wait for an answer).
	ErrPublish = errors.New("greengrass ipc publish failed")
	// ErrMessageTooLarge: a message from the nucleus exceeds MaxMessageSize.
	ErrMessageTooLarge = eventrpc.ErrMessageTooLarge
)
