package emulator

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors of the emulator.
var (
	// ErrInvalidArgument reports a bad Config or argument.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrBadState reports unusable files in the state directory.
	ErrBadState = errors.New("unusable state directory content")
	// ErrNotify reports that the MQTT notification could not be published.
	ErrNotify = errors.New("mqtt notification failed")
)

// awsJson1.1 error codes (the __type values and X-Amzn-ErrorType headers).
const (
	codeValidation     = "ValidationException"
	codeLimitExceeded  = "LimitExceededException"
	codeNotFound       = "ResourceNotFoundException"
	codeUnknownOp      = "UnknownOperationException"
	codeSerialization  = "SerializationException"
	codeInternalFailed = "InternalFailure"
)

// apiError is an awsJson1.1 error response: HTTP status, __type and message.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string { return e.Type + ": " + e.Message }

func errNotFound(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: codeNotFound, Message: fmt.Sprintf(format, args...)}
}

func errLimit(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: codeLimitExceeded, Message: fmt.Sprintf(format, args...)}
}

func errValidation(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: codeValidation, Message: fmt.Sprintf(format, args...)}
}
