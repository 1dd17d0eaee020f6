package awsapi

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"time"
)

// Retry defaults, as the AWS SDKs' "standard" retry mode.
const (
	DefaultMaxAttempts = 3
	retryBase          = 100 * time.Millisecond
	retryCap           = 5 * time.Second
)

// Error codes that mean "slow down or try again": the request was not processed.
var retryableCodes = map[string]bool{
	"ThrottlingException":       true,
	"TooManyRequestsException":  true,
	"RequestLimitExceeded":      true,
	"ServiceUnavailable":        true,
	"RequestThrottledException": true,
}

// retryable reports whether a failed attempt of op may be sent again.
// API errors are retried on throttling and transient server statuses and codes.
// Network errors are retried for every operation except OpenTunnel, which is
// retried only when the connection could not be made (the request was not sent):
// a second OpenTunnel after a lost response would open a second tunnel. An
// ambiguous OpenTunnel failure (see ambiguous) is not retried here: OpenTunnel
// first finds out whether the tunnel was created.
func retryable(op string, err error) bool {
	if op == opOpenTunnel && ambiguous(err) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.StatusCode {
		case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return retryableCodes[ae.Code]
	}
	var ne *netError
	if !errors.As(err, &ne) {
		return false // encoding, signing or credential errors: a retry cannot help
	}
	if op != opOpenTunnel {
		return true
	}
	var oe *net.OpError
	return errors.As(ne.err, &oe) && oe.Op == "dial"
}

// netError marks a transport failure of one attempt (no HTTP response).
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// backoff returns the full-jitter delay before retry number n (1 for the first retry):
// uniform in [0, min(cap, base*2^(n-1))).
func backoff(n int) time.Duration {
	d := retryCap
	if n < 7 {
		d = min(retryCap, retryBase<<(n-1))
	}
	return rand.N(d)
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ambiguous reports whether a failed OpenTunnel may have created the tunnel: a
// server error (500, 502, 503, 504: the request may have been processed before
// the failure) or a transport failure after the connection was made (the
// response was lost). Throttling and 4xx errors were not processed.
func ambiguous(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.StatusCode {
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var ne *netError
	if !errors.As(err, &ne) {
		return false
	}
	var oe *net.OpError
	return !(errors.As(ne.err, &oe) && oe.Op == "dial")
}
