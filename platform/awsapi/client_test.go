package awsapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorded is one request as the fake service saw it.
type recorded struct {
	header http.Header
	body   string
	method string
	path   string
}

// fakeService answers every request with status/headers/body and records it.
type fakeService struct {
	mu      sync.Mutex
	reqs    []recorded
	status  int
	headers map[string]string
	body    string
}

func (f *fakeService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{header: r.Header.Clone(), body: string(b), method: r.Method, path: r.URL.Path})
	status, headers, body := f.status, f.headers, f.body
	f.mu.Unlock()
	for k, v := range headers {
		w.Header().Set(k, v)
	}
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeService) last(t *testing.T) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("no request reached the fake service")
	}
	return f.reqs[len(f.reqs)-1]
}

func newTestClient(t *testing.T, h http.Handler) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(Config{
		Region:      "eu-west-1",
		Endpoint:    srv.URL,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		HTTPClient:  srv.Client(),
		Now:         func() time.Time { return time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC) },
		Sleep:       func(context.Context, time.Duration) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var authRE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/eu-west-1/IoTSecuredTunneling/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$`)

func TestOperationsWire(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		op       string
		respBody string
		call     func(c *Client) (any, error)
		wantBody string
		check    func(t *testing.T, out any)
	}{
		{
			op:       "OpenTunnel",
			respBody: `{"tunnelId":"t1","tunnelArn":"arn:aws:tunnel:eu-west-1:1:tunnel/t1","sourceAccessToken":"S","destinationAccessToken":"D"}`,
			call: func(c *Client) (any, error) {
				return c.OpenTunnel(ctx, &OpenTunnelInput{
					Description:       "maintenance",
					Tags:              []Tag{{Key: "team", Value: "ops"}},
					DestinationConfig: &DestinationConfig{ThingName: "pi-1", Services: []string{"SSH", "HTTP"}},
					TimeoutConfig:     &TimeoutConfig{MaxLifetimeTimeoutMinutes: 30},
				})
			},
			wantBody: `{"description":"maintenance","tags":[{"key":"team","value":"ops"},{"key":"tunnelctl:request-id","value":"ID"}],"destinationConfig":{"thingName":"pi-1","services":["SSH","HTTP"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":30}}`,
			check: func(t *testing.T, out any) {
				o := out.(*OpenTunnelOutput)
				if o.TunnelID != "t1" || o.SourceAccessToken != "S" || o.DestinationAccessToken != "D" || !strings.HasSuffix(o.TunnelARN, "/t1") {
					t.Errorf("got %+v", o)
				}
			},
		},
		{
			op:       "OpenTunnel",
			respBody: `{"tunnelId":"t2"}`,
			call:     func(c *Client) (any, error) { return c.OpenTunnel(ctx, &OpenTunnelInput{}) },
			wantBody: `{"tags":[{"key":"tunnelctl:request-id","value":"ID"}]}`,
		},
		{
			op:       "CloseTunnel",
			respBody: `{}`,
			call: func(c *Client) (any, error) {
				return nil, c.CloseTunnel(ctx, &CloseTunnelInput{TunnelID: "t1", Delete: true})
			},
			wantBody: `{"tunnelId":"t1","delete":true}`,
		},
		{
			op: "DescribeTunnel",
			respBody: `{"tunnel":{"tunnelId":"t1","tunnelArn":"a","status":"OPEN","createdAt":1764104400.5,` +
				`"sourceConnectionState":{"status":"CONNECTED","lastUpdatedAt":1764104401},` +
				`"destinationConfig":{"thingName":"pi-1","services":["SSH"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":720}}}`,
			call:     func(c *Client) (any, error) { return c.DescribeTunnel(ctx, &DescribeTunnelInput{TunnelID: "t1"}) },
			wantBody: `{"tunnelId":"t1"}`,
			check: func(t *testing.T, out any) {
				tu := out.(*DescribeTunnelOutput).Tunnel
				want := time.Unix(1764104400, 5e8).UTC()
				if !tu.CreatedAt.Equal(want) || tu.SourceConnectionState.Status != StatusConnected ||
					tu.DestinationConfig.ThingName != "pi-1" || tu.TimeoutConfig.MaxLifetimeTimeoutMinutes != 720 {
					t.Errorf("got %+v", tu)
				}
			},
		},
		{
			op:       "ListTunnels",
			respBody: `{"tunnelSummaries":[{"tunnelId":"t1","status":"CLOSED"}],"nextToken":"n2"}`,
			call: func(c *Client) (any, error) {
				return c.ListTunnels(ctx, &ListTunnelsInput{ThingName: "pi-1", MaxResults: 5, NextToken: "n1"})
			},
			wantBody: `{"thingName":"pi-1","maxResults":5,"nextToken":"n1"}`,
			check: func(t *testing.T, out any) {
				o := out.(*ListTunnelsOutput)
				if len(o.TunnelSummaries) != 1 || o.NextToken != "n2" || o.TunnelSummaries[0].Status != StatusClosed {
					t.Errorf("got %+v", o)
				}
			},
		},
		{
			op:       "RotateTunnelAccessToken",
			respBody: `{"tunnelArn":"a","destinationAccessToken":"D2"}`,
			call: func(c *Client) (any, error) {
				return c.RotateTunnelAccessToken(ctx, &RotateTunnelAccessTokenInput{TunnelID: "t1", ClientMode: ClientModeDestination,
					DestinationConfig: &DestinationConfig{ThingName: "pi-1", Services: []string{"SSH"}}})
			},
			wantBody: `{"tunnelId":"t1","clientMode":"DESTINATION","destinationConfig":{"thingName":"pi-1","services":["SSH"]}}`,
			check: func(t *testing.T, out any) {
				if o := out.(*RotateTunnelAccessTokenOutput); o.DestinationAccessToken != "D2" || o.SourceAccessToken != "" {
					t.Errorf("got %+v", o)
				}
			},
		},
		{
			op:       "TagResource",
			respBody: `{}`,
			call: func(c *Client) (any, error) {
				return nil, c.TagResource(ctx, &TagResourceInput{ResourceARN: "a", Tags: []Tag{{Key: "k", Value: ""}}})
			},
			wantBody: `{"resourceArn":"a","tags":[{"key":"k","value":""}]}`,
		},
		{
			op:       "UntagResource",
			respBody: `{}`,
			call: func(c *Client) (any, error) {
				return nil, c.UntagResource(ctx, &UntagResourceInput{ResourceARN: "a", TagKeys: []string{"k"}})
			},
			wantBody: `{"resourceArn":"a","tagKeys":["k"]}`,
		},
		{
			op:       "ListTagsForResource",
			respBody: `{"tags":[{"key":"k","value":"v"}]}`,
			call: func(c *Client) (any, error) {
				return c.ListTagsForResource(ctx, &ListTagsForResourceInput{ResourceARN: "a"})
			},
			wantBody: `{"resourceArn":"a"}`,
			check: func(t *testing.T, out any) {
				if o := out.(*ListTagsForResourceOutput); len(o.Tags) != 1 || o.Tags[0] != (Tag{"k", "v"}) {
					t.Errorf("got %+v", o)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.op, func(t *testing.T) {
			fs := &fakeService{body: tc.respBody}
			c := newTestClient(t, fs)
			out, err := tc.call(c)
			if err != nil {
				t.Fatalf("%s: %v", tc.op, err)
			}
			r := fs.last(t)
			// Every OpenTunnel carries a request tag of its own (see OpenTunnel).
			r.body = requestTagRe.ReplaceAllString(r.body, `$1"ID"`)
			checkWire(t, r, tc.op, tc.wantBody)
			if tc.check != nil {
				tc.check(t, out)
			}
		})
	}
}

var requestTagRe = regexp.MustCompile(`("key":"tunnelctl:request-id","value":)"[0-9a-f]{32}"`)

func checkWire(t *testing.T, r recorded, op, wantBody string) {
	t.Helper()
	if r.method != http.MethodPost || r.path != "/" {
		t.Errorf("request %s %s, want POST /", r.method, r.path)
	}
	if got := r.header.Get("X-Amz-Target"); got != "IoTSecuredTunneling."+op {
		t.Errorf("X-Amz-Target = %q", got)
	}
	if got := r.header.Get("Content-Type"); got != "application/x-amz-json-1.1" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := r.header.Get("X-Amz-Date"); got != "20261125T210000Z" {
		t.Errorf("X-Amz-Date = %q", got)
	}
	m := authRE.FindStringSubmatch(r.header.Get("Authorization"))
	if m == nil {
		t.Fatalf("Authorization header %q is not a SigV4 header for IoTSecuredTunneling", r.header.Get("Authorization"))
	}
	for _, h := range []string{"host", "x-amz-date", "x-amz-target", "content-type"} {
		if !strings.Contains(";"+m[1]+";", ";"+h+";") {
			t.Errorf("SignedHeaders %q lacks %s", m[1], h)
		}
	}
	if r.body != wantBody {
		t.Errorf("body\n got %s\nwant %s", r.body, wantBody)
	}
}

func TestSignatureChangesWithBody(t *testing.T) {
	fs := &fakeService{body: `{}`}
	c := newTestClient(t, fs)
	ctx := context.Background()
	_ = c.CloseTunnel(ctx, &CloseTunnelInput{TunnelID: "a"})
	a := fs.last(t).header.Get("Authorization")
	_ = c.CloseTunnel(ctx, &CloseTunnelInput{TunnelID: "b"})
	b := fs.last(t).header.Get("Authorization")
	if a == b {
		t.Fatal("signature does not cover the body")
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		headers    map[string]string
		body       string
		wantCode   string
		wantMsg    string
		notFound   bool
		limit      bool
		validation bool
	}{
		{"header and body", 400, map[string]string{"X-Amzn-ErrorType": "ResourceNotFoundException:http://internal.amazon.com/coral/"},
			`{"__type":"com.amazonaws.iotsecuredtunneling#ResourceNotFoundException","message":"tunnel t9 not found"}`,
			"ResourceNotFoundException", "tunnel t9 not found", true, false, false},
		{"type only", 400, nil, `{"__type":"LimitExceededException","message":"too many open tunnels"}`,
			"LimitExceededException", "too many open tunnels", false, true, false},
		{"namespaced type, capital Message", 400, nil, `{"__type":"aws#ValidationException","Message":"bad description"}`,
			"ValidationException", "bad description", false, false, true},
		{"plain text", 503, nil, "upstream\nbusy", "HTTP 503", "upstream busy", false, false, false},
		{"empty", 500, nil, "", "HTTP 500", "", false, false, false},
		{"code field", 403, nil, `{"code":"AccessDeniedException","message":"no"}`, "AccessDeniedException", "no", false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestClient(t, &fakeService{status: tc.status, headers: tc.headers, body: tc.body})
			_, err := c.DescribeTunnel(context.Background(), &DescribeTunnelInput{TunnelID: "t9"})
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if ae.Code != tc.wantCode || ae.Message != tc.wantMsg || ae.StatusCode != tc.status || ae.Operation != "DescribeTunnel" {
				t.Errorf("got %+v", ae)
			}
			if IsNotFound(err) != tc.notFound || IsLimitExceeded(err) != tc.limit || IsValidation(err) != tc.validation {
				t.Errorf("helpers disagree for %+v", ae)
			}
			if strings.ContainsAny(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestEndpoint(t *testing.T) {
	tests := []struct {
		region, override, want string
		wantErr                error
	}{
		{"us-east-1", "", "https://api.tunneling.iot.us-east-1.amazonaws.com", nil},
		{"cn-north-1", "", "https://api.tunneling.iot.cn-north-1.amazonaws.com.cn", nil},
		{"", "http://127.0.0.1:8440/", "http://127.0.0.1:8440", nil},
		{"", "", "", ErrNoRegion},
		{"", "127.0.0.1:8440", "", ErrBadEndpoint},
		{"", "ftp://x", "", ErrBadEndpoint},
	}
	for _, tc := range tests {
		got, err := resolveEndpoint(tc.region, tc.override)
		if got != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("resolveEndpoint(%q,%q) = %q, %v; want %q, %v", tc.region, tc.override, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestEpochTimeRoundTrip(t *testing.T) {
	in := DescribeTunnelOutput{Tunnel: Tunnel{TunnelID: "x", CreatedAt: EpochTime{time.Unix(1764104400, 250e6).UTC()}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"createdAt":1764104400.25`) || strings.Contains(string(b), "lastUpdatedAt") {
		t.Fatalf("marshal: %s", b)
	}
	var out DescribeTunnelOutput
	if err := json.Unmarshal(b, &out); err != nil || !out.Tunnel.CreatedAt.Equal(in.Tunnel.CreatedAt.Time) {
		t.Fatalf("round trip: %v %v", out.Tunnel.CreatedAt, err)
	}
	for _, bad := range []string{`"2026-01-01"`, `1e300`, `true`} {
		var e EpochTime
		if err := json.Unmarshal([]byte(bad), &e); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestNoCredentials(t *testing.T) {
	if _, err := New(Config{Region: "us-east-1"}); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("got %v", err)
	}
}

func TestListAllTunnelsPages(t *testing.T) {
	var mu sync.Mutex
	var tokens []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in ListTunnelsInput
		_ = json.NewDecoder(r.Body).Decode(&in)
		mu.Lock()
		tokens = append(tokens, in.NextToken)
		mu.Unlock()
		switch in.NextToken {
		case "":
			io.WriteString(w, `{"tunnelSummaries":[{"tunnelId":"a"},{"tunnelId":"b"}],"nextToken":"p2"}`)
		case "p2":
			io.WriteString(w, `{"tunnelSummaries":[{"tunnelId":"c"}]}`)
		}
	})
	c := newTestClient(t, h)
	all, err := c.ListAllTunnels(context.Background(), "pi-1", 0)
	if err != nil || len(all) != 3 || all[2].TunnelID != "c" {
		t.Fatalf("ListAllTunnels = %+v, %v", all, err)
	}
	if strings.Join(tokens, ",") != ",p2" {
		t.Errorf("page tokens sent: %q", tokens)
	}
	if some, _ := c.ListAllTunnels(context.Background(), "", 2); len(some) != 2 {
		t.Errorf("limit 2: got %d", len(some))
	}
}

// TestSignatureVerifies re-signs the request the server received, independently of
// the client, and compares: the signature must cover exactly the received body and
// the target header, with service IoTSecuredTunneling and the configured region.
func TestSignatureVerifies(t *testing.T) {
	fs := &fakeService{body: `{}`}
	c := newTestClient(t, fs)
	if err := c.CloseTunnel(context.Background(), &CloseTunnelInput{TunnelID: "t-1", Delete: true}); err != nil {
		t.Fatal(err)
	}
	got := fs.last(t)
	u := strings.TrimPrefix(c.Endpoint(), "http://")
	req, _ := http.NewRequest(http.MethodPost, "http://"+u+"/", strings.NewReader(got.body))
	req.Header.Set("Content-Type", got.header.Get("Content-Type"))
	req.Header.Set("X-Amz-Target", got.header.Get("X-Amz-Target"))
	sum := sha256.Sum256([]byte(got.body))
	creds := aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}
	err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "IoTSecuredTunneling",
		"eu-west-1", time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if want := req.Header.Get("Authorization"); got.header.Get("Authorization") != want {
		t.Errorf("signature does not verify\n got %s\nwant %s", got.header.Get("Authorization"), want)
	}
}
