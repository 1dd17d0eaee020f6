package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/restjson"
	"go.uber.org/goleak"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if binDir != "" {
			_ = os.RemoveAll(binDir)
		}
	}))
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// EmulatorBinary builds cmd/tunnel-emulator once per test binary, without
// the race detector, and returns its path: tests that kill the emulator or
// measure its memory run the real program. (Exported for the e2e tests of
// package emulator_test.)
func EmulatorBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = err
			return
		}
		if binDir, binErr = os.MkdirTemp("", "tunnel-emulator-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tunnel-emulator")
		out, err := exec.Command(goTool, "build", "-o", binPath, "github.com/tunnel-agent/tunnel-agent/cmd/tunnel-emulator").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/tunnel-emulator: %w: %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("building tunnel-emulator: %v", binErr)
	}
	return binPath
}

// fakeClock is an injectable clock for expiry and retention tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testEnv struct {
	e     *Emulator
	clock *fakeClock
	logs  *tunneltest.SyncBuffer
}

// startEmulator runs an emulator on loopback until the test ends.
func startEmulator(t testing.TB, mod func(*Config)) *testEnv {
	t.Helper()
	env := &testEnv{clock: newFakeClock(), logs: &tunneltest.SyncBuffer{}}
	cfg := Config{
		StateDir: t.TempDir(), Now: env.clock.Now, SweepInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	env.e = e
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return env
}

// apiResult is one API response.
type apiResult struct {
	status int
	header http.Header
	body   map[string]any
}

func (r apiResult) errType() string { s, _ := r.body["__type"].(string); return s }
func (r apiResult) str(k string) string {
	s, _ := r.body[k].(string)
	return s
}

// call invokes op through the API handler (in memory).
func (env *testEnv) call(t testing.TB, op string, body string) apiResult {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set("X-Amz-Target", "IoTSecuredTunneling."+op)
	req.Header.Set("Content-Type", jsonContentType)
	return env.do(t, req)
}

// Keys the tests sign with; without Config.Credentials any key is accepted.
const (
	testAccessKey = "AKIDEMULATORTEST"
	testSecretKey = "emulator-test-secret"
)

// sign signs req (body read and put back) at the emulator's clock, unless it
// carries an Authorization or X-Amz-Date header (a test of the signature).
func (env *testEnv) sign(t testing.TB, req *http.Request) {
	t.Helper()
	if req.Header.Get("Authorization") != "" || req.Header.Get("X-Amz-Date") != "" {
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	if err := SignRequest(req, body, testAccessKey, testSecretKey, env.e.cfg.Region, env.clock.Now()); err != nil {
		t.Fatal(err)
	}
}

func (env *testEnv) do(t testing.TB, req *http.Request) apiResult {
	t.Helper()
	env.sign(t, req)
	rec := httptest.NewRecorder()
	env.e.serveAPI(rec, req)
	res := apiResult{status: rec.Code, header: rec.Header()}
	if err := json.Unmarshal(rec.Body.Bytes(), &res.body); err != nil {
		t.Fatalf("%s: response is not JSON: %q", req.Header.Get("X-Amz-Target"), rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != jsonContentType {
		t.Errorf("Content-Type = %q, want %q", ct, jsonContentType)
	}
	if res.status != http.StatusOK {
		if res.header.Get("X-Amzn-ErrorType") != res.errType() || res.errType() == "" {
			t.Errorf("X-Amzn-ErrorType %q does not match __type %q", res.header.Get("X-Amzn-ErrorType"), res.errType())
		}
		if res.str("message") == "" {
			t.Errorf("error without message: %v", res.body)
		}
		// Decode the error as the AWS SDK for Go v2's awsJson1.1 deserializers do.
		code := restjson.SanitizeErrorCode(rec.Header().Get("X-Amzn-ErrorType"))
		jsonCode, msg, err := restjson.GetErrorInfo(json.NewDecoder(bytes.NewReader(rec.Body.Bytes())))
		if err != nil || code != res.errType() || restjson.SanitizeErrorCode(jsonCode) != code || msg != res.str("message") {
			t.Errorf("SDK error decoding: code %q json %q message %q err %v", code, jsonCode, msg, err)
		}
	}
	return res
}

// mustCall invokes op and fails the test unless it succeeds.
func (env *testEnv) mustCall(t testing.TB, op string, body string) apiResult {
	t.Helper()
	res := env.call(t, op, body)
	if res.status != http.StatusOK {
		t.Fatalf("%s %s: %d %v", op, body, res.status, res.body)
	}
	return res
}

type opened struct{ id, arn, src, dst string }

func (env *testEnv) open(t testing.TB, body string) opened {
	t.Helper()
	r := env.mustCall(t, "OpenTunnel", body)
	return opened{id: r.str("tunnelId"), arn: r.str("tunnelArn"), src: r.str("sourceAccessToken"), dst: r.str("destinationAccessToken")}
}

// waitFor polls cond until it holds, for up to 20 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tunneltest.WaitFor(t, 20*time.Second, what, cond)
}

func readAllString(r io.Reader) string {
	b, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	return string(b)
}
