package emulator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// signedReq builds a ListTunnels request signed by the AWS SDK for Go v2's
// signer with the given parameters; mod may change the request after signing.
type signParams struct {
	key, secret, service, region string
	at                           time.Time
}

func signedReq(t *testing.T, body string, p signParams, mod func(*http.Request)) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "http://api.tunneling.local/", strings.NewReader(body))
	req.Header.Set("X-Amz-Target", "IoTSecuredTunneling.ListTunnels")
	req.Header.Set("Content-Type", jsonContentType)
	sum := sha256.Sum256([]byte(body))
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: p.key, SecretAccessKey: p.secret},
		req, hex.EncodeToString(sum[:]), p.service, p.region, p.at)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(req)
	}
	return req
}

// TestSigV4 checks each refusal of protocol.md §7.1's SigV4 rules against
// requests signed by a real signer, with and without Config.Credentials.
func TestSigV4(t *testing.T) {
	verify := startEmulator(t, func(c *Config) { c.Credentials = map[string]string{testAccessKey: testSecretKey} })
	header := startEmulator(t, nil)
	now := verify.clock.Now()
	good := signParams{testAccessKey, testSecretKey, SigningName, DefaultRegion, now}
	with := func(f func(*signParams)) signParams { p := good; f(&p); return p }
	tests := []struct {
		name       string
		p          signParams
		mod        func(*http.Request)
		verifyWant string // error type with Credentials ("" success)
		headerWant string // error type without
		msg        string
	}{
		{"success", good, nil, "", "", ""},
		{"no Authorization", good, func(r *http.Request) { r.Header.Del("Authorization") }, codeMissingAuth, codeMissingAuth, "Missing Authentication Token"},
		{"garbage", good, func(r *http.Request) { r.Header.Set("Authorization", "hello") }, codeIncompleteSig, codeIncompleteSig, "AWS4-HMAC-SHA256"},
		{"garbage parameters", good, func(r *http.Request) { r.Header.Set("Authorization", "AWS4-HMAC-SHA256 what") },
			codeIncompleteSig, codeIncompleteSig, "missing equal-sign"},
		{"no signature", good, func(r *http.Request) {
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:strings.Index(a, ", Signature=")])
		}, codeIncompleteSig, codeIncompleteSig, "requires 'Signature' parameter"},
		{"no date", good, func(r *http.Request) { r.Header.Del("X-Amz-Date") }, codeIncompleteSig, codeIncompleteSig, "X-Amz-Date"},
		{"other service", with(func(p *signParams) { p.service = "execute-api" }), nil, codeInvalidSig, codeInvalidSig, "scoped to correct service: 'IoTSecuredTunneling'"},
		{"lower-case service", with(func(p *signParams) { p.service = "iotsecuredtunneling" }), nil, codeInvalidSig, codeInvalidSig, "correct service"},
		{"other region", with(func(p *signParams) { p.region = "eu-west-1" }), nil, codeInvalidSig, codeInvalidSig, "valid region, not 'eu-west-1'"},
		{"2010 date", with(func(p *signParams) { p.at = time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC) }), nil, codeInvalidSig, codeInvalidSig, "Signature expired: 20100101T000000Z"},
		{"6 minutes ahead", with(func(p *signParams) { p.at = now.Add(6 * time.Minute) }), nil, codeInvalidSig, codeInvalidSig, "not yet current"},
		{"4 minutes behind", with(func(p *signParams) { p.at = now.Add(-4 * time.Minute) }), nil, "", "", ""},
		{"wrong secret", with(func(p *signParams) { p.secret = "wrong" }), nil, codeInvalidSig, "", "does not match the signature you provided"},
		{"unknown key", with(func(p *signParams) { p.key = "AKIDUNKNOWN" }), nil, codeUnrecognizedClient, "", "security token included in the request is invalid"},
		{"target changed after signing", good, func(r *http.Request) { r.Header.Set("X-Amz-Target", "IoTSecuredTunneling.OpenTunnel") },
			codeInvalidSig, "", "The Canonical String for this request should have been"},
		{"body changed after signing", good, func(r *http.Request) { r.Body, r.ContentLength = httpBody(`{"maxResults":1}`), 16 }, codeInvalidSig, "", "does not match"},
		{"body changed, content hash sent", good, func(r *http.Request) {
			sum := sha256.Sum256([]byte("{}"))
			r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			r.Body, r.ContentLength = httpBody(`{"maxResults":1}`), 16
		}, codeInvalidSig, codeInvalidSig, "x-amz-content-sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				env  *testEnv
				want string
			}{{verify, tt.verifyWant}, {header, tt.headerWant}} {
				res := c.env.do(t, signedReq(t, "{}", tt.p, tt.mod))
				if c.want == "" {
					if res.status != http.StatusOK {
						t.Fatalf("credentials %v: got %d %v, want success", c.env == verify, res.status, res.body)
					}
					continue
				}
				if res.status != http.StatusForbidden || res.errType() != c.want || !strings.Contains(res.str("message"), tt.msg) {
					t.Fatalf("credentials %v: got %d %s %q, want 403 %s containing %q",
						c.env == verify, res.status, res.errType(), res.str("message"), c.want, tt.msg)
				}
			}
		})
	}
}

func httpBody(s string) *readCloser { return &readCloser{bytes.NewReader([]byte(s))} }

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// TestNoAuth checks that Config.NoAuth accepts unsigned requests.
func TestNoAuth(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.NoAuth = true })
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "IoTSecuredTunneling.ListTunnels")
	req.Header.Set("Content-Type", jsonContentType)
	req.Header.Set("Authorization", "anything at all")
	if res := env.do(t, req); res.status != http.StatusOK {
		t.Fatalf("got %d %v", res.status, res.body)
	}
	if _, err := New(Config{StateDir: t.TempDir(), NoAuth: true, Credentials: map[string]string{"a": "b"}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("NoAuth with Credentials: %v", err)
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := LoadCredentials(write("# keys\n[default]\naws_access_key_id = AKID1\naws_secret_access_key = s1\nregion=x\n\n[ci]\naws_access_key_id=AKID2\naws_secret_access_key=s2/with=equals\n"))
	if err != nil || len(got) != 2 || got["AKID1"] != "s1" || got["AKID2"] != "s2/with=equals" {
		t.Fatalf("got %v %v", got, err)
	}
	for _, bad := range []string{"[p]\naws_access_key_id=A\n", "", "[p]\nnot a pair\n", "[p]\naws_secret_access_key=topsecret\n"} {
		_, err := LoadCredentials(write(bad))
		if !errors.Is(err, ErrInvalidArgument) || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
