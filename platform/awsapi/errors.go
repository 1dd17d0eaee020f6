package awsapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
)

// Error codes the service (or the emulator) returns.
const (
	CodeResourceNotFound = "ResourceNotFoundException"
	CodeLimitExceeded    = "LimitExceededException"
	CodeValidation       = "ValidationException"
)

// Sentinel errors of the client.
var (
	// ErrNoRegion means neither a region nor an endpoint was configured.
	ErrNoRegion = errors.New("no AWS region: pass --region, set AWS_REGION, or set region in ~/.aws/config")
	// ErrNoCredentials means the credential chain found nothing usable.
	ErrNoCredentials = errors.New("no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, use --profile, or configure ~/.aws/credentials")
	// ErrBadEndpoint means the endpoint override is not an http(s) URL.
	ErrBadEndpoint = errors.New("endpoint must be an http:// or https:// URL such as http://127.0.0.1:8440")
)

// maxErrorBody bounds how much of an error response is read and kept.
const maxErrorBody = 64 << 10

// APIError is a service error: an HTTP status with an awsJson1.1 error code and message.
// Match it with errors.As, or with IsNotFound / IsLimitExceeded.
type APIError struct {
	Operation  string // e.g. "OpenTunnel"
	Code       string // e.g. "ResourceNotFoundException"; "HTTP 503" when the service gave none
	Message    string // the service's text
	StatusCode int
	RequestID  string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("%s: %s: %s (HTTP %d)", e.Operation, e.Code, msg, e.StatusCode)
}

// IsNotFound reports whether err is (or wraps) a ResourceNotFoundException.
func IsNotFound(err error) bool { return hasCode(err, CodeResourceNotFound) }

// IsLimitExceeded reports whether err is (or wraps) a LimitExceededException.
func IsLimitExceeded(err error) bool { return hasCode(err, CodeLimitExceeded) }

// IsValidation reports whether err is (or wraps) a ValidationException.
func IsValidation(err error) bool { return hasCode(err, CodeValidation) }

func hasCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// parseError builds an *APIError from a non-2xx response body and headers.
// The code comes from X-Amzn-ErrorType, else from __type/code in the body; both may
// carry decorations ("Code:http://..." and "namespace#Code") which are removed.
func parseError(op string, status int, header http.Header, body []byte) *APIError {
	e := &APIError{Operation: op, StatusCode: status, RequestID: header.Get("X-Amzn-Requestid")}
	var doc struct {
		Type     string `json:"__type"`
		Code     string `json:"code"`
		Message  string `json:"message"`
		MessageU string `json:"Message"`
	}
	jsonOK := json.Unmarshal(body, &doc) == nil
	e.Code = sanitizeCode(header.Get("X-Amzn-ErrorType"))
	if e.Code == "" && jsonOK {
		e.Code = sanitizeCode(doc.Type)
		if e.Code == "" {
			e.Code = sanitizeCode(doc.Code)
		}
	}
	if e.Code == "" {
		e.Code = fmt.Sprintf("HTTP %d", status)
	}
	switch {
	case jsonOK && doc.Message != "":
		e.Message = oneLine(doc.Message)
	case jsonOK && doc.MessageU != "":
		e.Message = oneLine(doc.MessageU)
	case !jsonOK:
		e.Message = oneLine(string(body))
	}
	return e
}

// sanitizeCode strips the awsJson decorations: "ns#Code" and "Code:http://...".
func sanitizeCode(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 128 || strings.IndexFunc(s, func(r rune) bool {
		return !(r == '_' || r == '.' || r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)))
	}) >= 0 {
		return "" // not a code: fall back to the next source
	}
	return s
}

// oneLine makes a server text safe to print on one line and bounds its length.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	const max = 300
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
