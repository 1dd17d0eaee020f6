package awsapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

// scriptedService answers the i-th request with steps[i] (the last step repeats)
// and records the requests.
type scriptedService struct {
	fakeService
	steps []step
}

// step is one scripted answer.
type step struct {
	status int
	body   string
}

func (s *scriptedService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	step := s.steps[min(len(s.reqs), len(s.steps)-1)]
	s.status, s.body = step.status, step.body
	s.mu.Unlock()
	s.fakeService.ServeHTTP(w, r)
}

func (s *scriptedService) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// retryClient is a client of srv whose clock advances a second per signature and
// whose sleeps are recorded instead of waited.
func retryClient(t *testing.T, endpoint string, hc *http.Client, attempts int) (*Client, *[]time.Duration) {
	t.Helper()
	var tick atomic.Int64
	var mu sync.Mutex
	slept := new([]time.Duration)
	c, err := New(Config{
		Region:      "eu-west-1",
		Endpoint:    endpoint,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		HTTPClient:  hc,
		MaxAttempts: attempts,
		Now: func() time.Time {
			return time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC).Add(time.Duration(tick.Add(1)) * time.Second)
		},
		Sleep: func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			*slept = append(*slept, d)
			mu.Unlock()
			return ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, slept
}

func TestRetryThrottlingThenSuccess(t *testing.T) {
	for _, op := range []string{"DescribeTunnel", "OpenTunnel"} {
		t.Run(op, func(t *testing.T) {
			throttled := step{status: 429, body: `{"__type":"ThrottlingException","message":"Rate exceeded"}`}
			svc := &scriptedService{steps: []step{throttled, throttled, {body: `{"tunnelId":"t1"}`}}}
			srv := httptest.NewServer(svc)
			defer srv.Close()
			c, slept := retryClient(t, srv.URL, srv.Client(), 0)
			var err error
			if op == "OpenTunnel" {
				_, err = c.OpenTunnel(context.Background(), &OpenTunnelInput{})
			} else {
				_, err = c.DescribeTunnel(context.Background(), &DescribeTunnelInput{TunnelID: "t1"})
			}
			if err != nil {
				t.Fatalf("after two throttles: %v", err)
			}
			if n := svc.count(); n != 3 {
				t.Fatalf("requests = %d, want 3", n)
			}
			seen := map[string]bool{}
			for _, r := range svc.reqs {
				seen[r.header.Get("X-Amz-Date")+" "+r.header.Get("Authorization")] = true
			}
			if len(seen) != 3 {
				t.Errorf("attempts were not signed afresh: %d distinct date+signature pairs", len(seen))
			}
			checkBackoff(t, *slept, 2)
		})
	}
}

func checkBackoff(t *testing.T, slept []time.Duration, want int) {
	t.Helper()
	if len(slept) != want {
		t.Fatalf("slept %d times, want %d", len(slept), want)
	}
	for i, d := range slept {
		if limit := retryBase << i; d < 0 || d >= limit {
			t.Errorf("sleep %d = %v, want in [0, %v)", i+1, d, limit)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		attempts  int
		wantReqs  int
		wantCode  string
		retryable bool
	}{
		{"validation never retried", 400, `{"__type":"ValidationException","message":"bad"}`, 0, 1, "ValidationException", false},
		{"not found never retried", 400, `{"__type":"ResourceNotFoundException"}`, 0, 1, "ResourceNotFoundException", false},
		{"503 up to the default", 503, "busy", 0, 3, "HTTP 503", true},
		{"500", 500, "", 0, 3, "HTTP 500", true},
		{"502", 502, "", 0, 3, "HTTP 502", true},
		{"504", 504, "", 0, 3, "HTTP 504", true},
		{"throttling code on 400", 400, `{"__type":"TooManyRequestsException"}`, 0, 3, "TooManyRequestsException", true},
		{"RequestLimitExceeded", 400, `{"__type":"RequestLimitExceeded"}`, 5, 5, "RequestLimitExceeded", true},
		{"ServiceUnavailable", 400, `{"__type":"ServiceUnavailable"}`, 2, 2, "ServiceUnavailable", true},
		{"retries disabled", 429, "", 1, 1, "HTTP 429", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := &scriptedService{steps: []step{{status: tc.status, body: tc.body}}}
			srv := httptest.NewServer(svc)
			defer srv.Close()
			c, slept := retryClient(t, srv.URL, srv.Client(), tc.attempts)
			_, err := c.DescribeTunnel(context.Background(), &DescribeTunnelInput{TunnelID: "t1"})
			var ae *APIError
			if !errors.As(err, &ae) || ae.Code != tc.wantCode {
				t.Fatalf("error %v, want the last %s", err, tc.wantCode)
			}
			if n := svc.count(); n != tc.wantReqs {
				t.Errorf("requests = %d, want %d", n, tc.wantReqs)
			}
			checkBackoff(t, *slept, tc.wantReqs-1)
			if retryable("DescribeTunnel", err) != tc.retryable {
				t.Errorf("retryable = %v, want %v", !tc.retryable, tc.retryable)
			}
		})
	}
}

func TestRetryCancelStopsWaiting(t *testing.T) {
	svc := &scriptedService{steps: []step{{status: 503}}}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	c, _ := retryClient(t, srv.URL, srv.Client(), 10)
	ctx, cancel := context.WithCancel(context.Background())
	c.cfg.Sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	_, err := c.DescribeTunnel(ctx, &DescribeTunnelInput{TunnelID: "t1"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 503 {
		t.Fatalf("error %v, want the 503 of the only attempt", err)
	}
	if n := svc.count(); n != 1 {
		t.Errorf("requests = %d, want 1", n)
	}
}

// TestRetryNetworkErrors: a connection dropped after the request was read is
// retried for DescribeTunnel but not for OpenTunnel (it may have opened a tunnel);
// a refused connection is retried for both.
func TestRetryNetworkErrors(t *testing.T) {
	var hits atomic.Int32
	drop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer drop.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name, endpoint, op string
		wantSleeps         int
		wantHits           int32
	}{
		{"describe after send", drop.URL, "DescribeTunnel", 2, 3},
		{"open after send", drop.URL, "OpenTunnel", 0, 1},
		{"open refused", refused, "OpenTunnel", 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			c, slept := retryClient(t, tc.endpoint, hc, 0)
			if tc.op == "OpenTunnel" {
				_, err = c.OpenTunnel(context.Background(), &OpenTunnelInput{})
			} else {
				_, err = c.DescribeTunnel(context.Background(), &DescribeTunnelInput{TunnelID: "t1"})
			}
			var ae *APIError
			if err == nil || errors.As(err, &ae) {
				t.Fatalf("error %v, want a network error", err)
			}
			if len(*slept) != tc.wantSleeps || hits.Load() != tc.wantHits {
				t.Errorf("sleeps = %d, hits = %d; want %d, %d", len(*slept), hits.Load(), tc.wantSleeps, tc.wantHits)
			}
		})
	}
}
