package emulator

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// sdkJSDir holds the official AWS SDK for JavaScript v3 check (check.mjs) with
// its pinned package.json and package-lock.json; node_modules is not committed.
const sdkJSDir = "testdata/sdk-js"

const (
	sdkJSMaxOpen     = 10              // small MaxOpenTunnels so check.mjs reaches LimitExceededException
	sdkJSInstallTime = 3 * time.Minute // npm ci bound
	sdkJSRunTime     = 60 * time.Second
)

// npmOfflineRe matches npm failures that mean "no registry", not a broken
// lock file.
var npmOfflineRe = regexp.MustCompile(`ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network|proxy|CERT|certificate`)

// TestOfficialJSSDK runs @aws-sdk/client-iotsecuretunneling, unchanged,
// against the emulator: all eight operations, typed errors, paging and the
// open-tunnel limit (see testdata/sdk-js/check.mjs for the checks).
func TestOfficialJSSDK(t *testing.T) {
	node := sdkJSTools(t)
	e := startSDKEmulator(t)

	ctx, cancel := context.WithTimeout(context.Background(), sdkJSRunTime)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs")
	cmd.Dir = sdkJSDir
	cmd.Env = append(sdkJSEnv(),
		"EMULATOR_API_URL="+e.APIURL(),
		"EMULATOR_MAX_OPEN_TUNNELS="+strconv.Itoa(sdkJSMaxOpen),
		"EMULATOR_ACCOUNT_ID="+DefaultAccountID,
		"EMULATOR_ACCESS_KEY_ID="+testAccessKey,
		"EMULATOR_SECRET_ACCESS_KEY="+testSecretKey,
	)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("node check.mjs did not finish within %s:\nstdout: %s\nstderr: %s", sdkJSRunTime, stdout.String(), stderr.String())
	}
	if err != nil {
		t.Fatalf("the official JS SDK failed against the emulator (%v); failed checks:\n%s\nresults: %s",
			err, stderr.String(), stdout.String())
	}
	t.Logf("node check.mjs: %s", strings.TrimSpace(stdout.String()))
}

// sdkJSTools returns the node binary after making sure node_modules is
// installed; it skips the test when node, npm or the npm registry are not
// available.
func sdkJSTools(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: install Node.js 18+ to run the official AWS JS SDK check")
	}
	if v, err := exec.Command(node, "-p", "process.versions.node.split('.')[0]").Output(); err != nil {
		t.Skipf("node does not run (%v): install Node.js 18+", err)
	} else if major, _ := strconv.Atoi(strings.TrimSpace(string(v))); major < 18 {
		t.Skipf("node %s is too old for the AWS SDK for JavaScript v3: install Node.js 18+", strings.TrimSpace(string(v)))
	}
	if _, err := os.Stat(filepath.Join(sdkJSDir, "node_modules", "@aws-sdk", "client-iotsecuretunneling", "package.json")); err == nil {
		return node
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not on PATH: install npm, or run `npm ci` in " + sdkJSDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sdkJSInstallTime)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = sdkJSDir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	switch {
	case ctx.Err() != nil:
		t.Skipf("npm ci in %s did not finish within %s (registry unreachable?): %s", sdkJSDir, sdkJSInstallTime, sdkJSTail(out))
	case err != nil && npmOfflineRe.Match(out):
		t.Skipf("npm ci in %s cannot reach the npm registry: %s", sdkJSDir, sdkJSTail(out))
	case err != nil:
		t.Fatalf("npm ci in %s: %v: %s", sdkJSDir, err, out)
	}
	return node
}

// sdkJSEnv is the environment without AWS_* variables, so that a developer's
// profile, region or endpoint settings cannot change what the SDK does.
func sdkJSEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return env
}

func sdkJSTail(b []byte) string {
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// startSDKEmulator runs a real emulator with the wall clock (the SDK checks
// that timestamps are near now) and stops it when the test ends; its log is
// shown when the test fails.
func startSDKEmulator(t *testing.T) *Emulator {
	t.Helper()
	logs := &tunneltest.SyncBuffer{}
	e, err := New(Config{
		StateDir: t.TempDir(), MaxOpenTunnels: sdkJSMaxOpen,
		Credentials: map[string]string{testAccessKey: testSecretKey}, // verify every signature
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("emulator Run: %v", err)
		}
		if t.Failed() {
			t.Logf("emulator log:\n%s", logs.String())
		}
	})
	return e
}

// TestAWSCLI runs the AWS CLI (botocore's SigV4 signer) against an emulator
// that verifies signatures: OpenTunnel, DescribeTunnel and ListTunnels pass,
// a wrong secret is InvalidSignatureException. Skipped without `aws`.
func TestAWSCLI(t *testing.T) {
	aws, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("aws (the AWS CLI) is not on PATH")
	}
	e := startSDKEmulator(t)
	run := func(secret string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, aws, append([]string{"--endpoint-url", e.APIURL(), "--output", "json", "iotsecuretunneling"}, args...)...)
		cmd.Env = append(sdkJSEnv(), "AWS_ACCESS_KEY_ID="+testAccessKey, "AWS_SECRET_ACCESS_KEY="+secret,
			"AWS_DEFAULT_REGION="+DefaultRegion, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(testSecretKey, "open-tunnel", "--destination-config", "thingName=pi-1,services=SSH", "--description", "café \ufffd")
	if err != nil || !strings.Contains(out, `"tunnelId"`) {
		t.Fatalf("open-tunnel: %v\n%s", err, out)
	}
	id := regexp.MustCompile(`"tunnelId": "([^"]+)"`).FindStringSubmatch(out)[1]
	if out, err := run(testSecretKey, "describe-tunnel", "--tunnel-id", id); err != nil || !strings.Contains(out, "café \ufffd") {
		t.Fatalf("describe-tunnel: %v\n%s", err, out)
	}
	if out, err := run(testSecretKey, "list-tunnels"); err != nil || !strings.Contains(out, id) {
		t.Fatalf("list-tunnels: %v\n%s", err, out)
	}
	if out, err := run("wrong", "list-tunnels"); err == nil || !strings.Contains(out, "InvalidSignatureException") {
		t.Fatalf("wrong secret: %v\n%s", err, out)
	}
}
