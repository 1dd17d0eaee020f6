package awsapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// faultProxy stands in front of a real emulator's API and fails chosen operations
// with HTTP 500: "before" without forwarding (nothing happened), "after" once the
// emulator has processed the request (the response is lost, as behind a failing
// load balancer). Each fault fires once per entry in the list.
type faultProxy struct {
	mu     sync.Mutex
	faults map[string][]string // operation -> "before"/"after", consumed in order
	seen   map[string]int
	rp     *httputil.ReverseProxy
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), TargetPrefix+".")
	p.mu.Lock()
	mode := ""
	if q := p.faults[op]; len(q) > 0 {
		mode, p.faults[op] = q[0], q[1:]
	}
	p.seen[op]++
	p.mu.Unlock()
	switch mode {
	case "before":
		http.Error(w, `{"message":"internal error"}`, http.StatusInternalServerError)
	case "after":
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		http.Error(w, `{"message":"internal error"}`, http.StatusInternalServerError)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

func TestOpenTunnelAfterServerError(t *testing.T) {
	// retryClient signs for eu-west-1; the emulator checks the SigV4 scope.
	e := startEmulator(t, emulator.Config{Region: "eu-west-1"})
	direct, err := New(Config{Endpoint: e.APIURL(), Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("K", "S", "")})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	tests := []struct {
		name      string
		faults    map[string][]string
		wantErr   error
		wantOpen  int // open tunnels to the thing afterwards
		wantCalls int // OpenTunnel requests sent
	}{
		{"500 after creating: adopted, not resent", map[string][]string{"OpenTunnel": {"after"}}, nil, 1, 1},
		{"500 before creating: sent again", map[string][]string{"OpenTunnel": {"before"}}, nil, 1, 2},
		{"lookup fails: stop and say so", map[string][]string{"OpenTunnel": {"after"}, "ListTunnels": {"before", "before", "before"}}, ErrOpenUnknown, 1, 1},
		{"always 500 before: gives up, nothing open", map[string][]string{"OpenTunnel": {"before", "before", "before"}}, nil, 0, 3},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fp := &faultProxy{faults: tc.faults, seen: map[string]int{}}
			u, _ := url.Parse(e.APIURL())
			fp.rp = httputil.NewSingleHostReverseProxy(u)
			srv := httptest.NewServer(fp)
			defer srv.Close()
			c, _ := retryClient(t, srv.URL, srv.Client(), 0)
			c.cfg.Now = direct.cfg.Now // the emulator's creation times are real
			thing := "pi-500-" + string(rune('a'+i))
			out, err := c.OpenTunnel(context.Background(), &OpenTunnelInput{
				DestinationConfig: &DestinationConfig{ThingName: thing, Services: []string{"SSH"}}})
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && tc.wantOpen == 1 && (err != nil || out.SourceAccessToken == "" || out.DestinationAccessToken == ""):
				t.Errorf("OpenTunnel = %+v, %v; want tokens", out, err)
			case tc.wantOpen == 0 && err == nil:
				t.Error("OpenTunnel succeeded through a service that always fails")
			}
			if err != nil && !strings.Contains(err.Error(), thing) && errors.Is(err, ErrOpenUnknown) {
				t.Errorf("error %q does not say how to check (tunnelctl list --thing %s)", err, thing)
			}
			if fp.seen["OpenTunnel"] != tc.wantCalls {
				t.Errorf("OpenTunnel sent %d times, want %d", fp.seen["OpenTunnel"], tc.wantCalls)
			}
			list, err := direct.ListAllTunnels(context.Background(), thing, 0)
			if err != nil {
				t.Fatal(err)
			}
			open := 0
			for _, s := range list {
				if s.Status == StatusOpen {
					open++
				}
			}
			if open != tc.wantOpen {
				t.Errorf("%d open tunnels to %s, want exactly %d", open, thing, tc.wantOpen)
			}
		})
	}
}
