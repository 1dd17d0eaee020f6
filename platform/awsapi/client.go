// Package awsapi is a small typed client for the AWS IoT Secure Tunneling control plane
// (service IoTSecuredTunneling, protocol awsJson1.1, API version 2018-10-05): the eight
// operations of protocol.md §7, SigV4-signed with the AWS SDK for Go v2 core modules.
// It works against AWS and, with an endpoint override, against the local emulator.
package awsapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Wire constants of the service (protocol.md §7.1).
const (
	SigningName  = "IoTSecuredTunneling"
	TargetPrefix = "IoTSecuredTunneling"
	ContentType  = "application/x-amz-json-1.1"
	// DefaultRegion is the signing region used with an endpoint override and no region.
	DefaultRegion = "us-east-1"
)

// Config configures a Client.
type Config struct {
	// Region is the AWS region (signing region, and the endpoint when Endpoint is empty).
	Region string
	// Endpoint overrides the service URL, e.g. "http://127.0.0.1:8440" for the emulator.
	Endpoint string
	// Credentials signs the requests. Required.
	Credentials aws.CredentialsProvider
	// HTTPClient sends the requests; nil means a client of its own (30 s timeout)
	// whose idle connections Close releases.
	HTTPClient *http.Client
	// RootCAs, when set, verifies the API's certificate instead of the system
	// roots (AWS_CA_BUNDLE); used only by the client's own transport.
	RootCAs *x509.CertPool
	// Logger receives one Debug line per attempt: operation, endpoint, region,
	// attempt, status, request id, duration. Never a body, token or credential.
	// nil discards.
	Logger *slog.Logger
	// Now is the signing clock; nil means time.Now.
	Now func() time.Time
	// UserAgent is sent as User-Agent when set.
	UserAgent string
	// MaxAttempts bounds the attempts per operation on throttling and transient
	// errors (see retryable); 0 means DefaultMaxAttempts, 1 disables retries.
	MaxAttempts int
	// Sleep waits between attempts (full-jitter exponential backoff, base 100 ms,
	// cap 5 s); it returns ctx.Err() when ctx ends first. nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Client calls the IoTSecuredTunneling API. It is safe for concurrent use.
type Client struct {
	cfg      Config
	log      *slog.Logger
	settings Settings
	endpoint string
	signer   *v4.Signer
	http     *http.Client
	own      *http.Transport // set when the client made its own transport
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.Credentials == nil {
		return nil, ErrNoCredentials
	}
	endpoint, err := resolveEndpoint(cfg.Region, cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, endpoint: endpoint, signer: v4.NewSigner(), http: cfg.HTTPClient}
	c.settings = Settings{Endpoint: endpoint, Region: cfg.Region}
	if c.http == nil {
		c.own = http.DefaultTransport.(*http.Transport).Clone()
		if cfg.RootCAs != nil {
			c.own.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		}
		c.http = &http.Client{Timeout: 30 * time.Second, Transport: c.own}
	}
	return c, nil
}

// Close releases the idle connections of the client's own transport. The client
// stays usable (new requests open new connections).
func (c *Client) Close() {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
}

// Endpoint returns the URL requests go to.
func (c *Client) Endpoint() string { return c.endpoint }

// Region returns the signing region.
func (c *Client) Region() string { return c.cfg.Region }

// Settings returns where the client's endpoint and CA bundle came from.
func (c *Client) Settings() Settings { return c.settings }

// EndpointForRegion returns the public API endpoint of a region
// (api.tunneling.iot.<region>.amazonaws.com, .com.cn in China regions).
func EndpointForRegion(region string) string {
	suffix := "amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix = "amazonaws.com.cn"
	}
	return "https://api.tunneling.iot." + region + "." + suffix
}

func resolveEndpoint(region, override string) (string, error) {
	if override == "" {
		if region == "" {
			return "", ErrNoRegion
		}
		return EndpointForRegion(region), nil
	}
	return ValidateEndpoint(override)
}

// call sends one operation, retrying throttling and transient failures with
// backoff (each attempt signed afresh), and decodes the response into out (which may be nil).
func (c *Client) call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encoding %s request: %w", op, err)
	}
	for attempt := 1; ; attempt++ {
		err = c.logged(ctx, op, attempt, body, out)
		if err == nil || attempt >= c.cfg.MaxAttempts || !retryable(op, err) || ctx.Err() != nil {
			break
		}
		if c.cfg.Sleep(ctx, backoff(attempt)) != nil {
			break // cancelled while waiting: report the last failure
		}
	}
	var ne *netError
	if errors.As(err, &ne) {
		return fmt.Errorf("calling %s at %s (check the endpoint, region and network): %w", op, c.endpoint, ne.err)
	}
	return err
}

// logged runs one attempt and logs it at Debug.
func (c *Client) logged(ctx context.Context, op string, attempt int, body []byte, out any) error {
	start := time.Now()
	status, reqID, err := c.attempt(ctx, op, body, out)
	attrs := []any{logOperation, op, logEndpoint, c.endpoint, logRegion, c.cfg.Region, logAttempt, attempt,
		logStatus, status, logRequestID, reqID, logDuration, time.Since(start).Round(time.Millisecond)}
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		attrs = append(attrs, logCode, ae.Code)
	case err != nil:
		attrs = append(attrs, logErr, err)
	}
	c.log.Debug("API request", attrs...)
	return err
}

// attempt sends one signed request. Transport failures come back as *netError.
func (c *Client) attempt(ctx context.Context, op string, body []byte, out any) (status int, reqID string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint+"/", bytes.NewReader(body))
	if err != nil {
		return 0, "", fmt.Errorf("building %s request: %w", op, err)
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("X-Amz-Target", TargetPrefix+"."+op)
	if c.cfg.UserAgent != "" {
		req.Header.Set("User-Agent", c.cfg.UserAgent)
	}
	if err := c.sign(ctx, req, body); err != nil {
		return 0, "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", &netError{err: err}
	}
	defer resp.Body.Close()
	status, reqID = resp.StatusCode, resp.Header.Get("X-Amzn-Requestid")
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return status, reqID, parseError(op, resp.StatusCode, resp.Header, b)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return status, reqID, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return status, reqID, fmt.Errorf("decoding %s response from %s: %w", op, c.endpoint, err)
	}
	return status, reqID, nil
}

// Log attribute keys.
const (
	logOperation = "operation"
	logEndpoint  = "endpoint"
	logRegion    = "region"
	logAttempt   = "attempt"
	logStatus    = "status"
	logRequestID = "request_id"
	logDuration  = "duration"
	logCode      = "code"
	logErr       = "err"
	logSource    = "source"
	logFile      = "file"
	logTunnel    = "tunnel"
)

func (c *Client) sign(ctx context.Context, req *http.Request, body []byte) error {
	creds, err := c.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoCredentials, err)
	}
	sum := sha256.Sum256(body)
	err = c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), SigningName, c.cfg.Region, c.cfg.Now())
	if err != nil {
		return fmt.Errorf("signing request: %w", err)
	}
	return nil
}
