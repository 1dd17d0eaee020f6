package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// TestMessages covers the one-line messages of issue 14's defect 6.
func TestMessages(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	ep := "--endpoint=" + e.APIURL()
	tests := []struct {
		name string
		args []string
		code int
		want string
		not  string
	}{
		{"not found said once", []string{ep, "describe", "nope"}, ExitFailure, "check the tunnelId", "check the tunnel ID"},
		{"four services", []string{ep, "open", "--thing", "pi-1", "--service", "A,B,C,D"}, ExitUsage, "a tunnel carries at most 3", "close tunnels"},
		{"empty description", []string{ep, "open", "--thing", "pi-1", "--service", "SSH", "--description", ""}, ExitUsage, "--description is empty", ""},
		{"endpoint without scheme", []string{"--endpoint", "127.0.0.1:8440", "list"}, ExitUsage, "--data-endpoint", ""},
		{"open without thing before credentials", []string{"open", "--region", "eu-west-1"}, ExitUsage, "--thing NAME --service SSH", "credentials"},
		{"ssh --json", []string{"ssh", "pi-1", "--json"}, ExitUsage, "no JSON output", ""},
		{"demo --json", []string{"demo", "--json"}, ExitUsage, "no JSON output", ""},
		{"connect --json", []string{"connect", "pi-1", "--json"}, ExitUsage, "no JSON output", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, nil, tc.args...)
			r.oneLineErr(t, tc.code, tc.want)
			if tc.not != "" && strings.Contains(r.stderr, tc.not) {
				t.Errorf("stderr %q contains %q", r.stderr, tc.not)
			}
		})
	}
}

func TestDescribeErrorTexts(t *testing.T) {
	tests := []struct {
		err       *awsapi.APIError
		want, not string
	}{
		{&awsapi.APIError{Operation: "DescribeTunnel", Code: "HTTP 502", StatusCode: 502, Message: "bad gateway"}, "DescribeTunnel failed (HTTP 502): bad gateway", "HTTP 502,"},
		{&awsapi.APIError{Operation: "OpenTunnel", Code: awsapi.CodeLimitExceeded, StatusCode: 400,
			Message: "destinationConfig.services has 4 services; a tunnel supports at most 3 services"}, "a tunnel carries at most 3 services", "close tunnels"},
		{&awsapi.APIError{Operation: "OpenTunnel", Code: awsapi.CodeLimitExceeded, StatusCode: 400,
			Message: "the account already has 100 open tunnels"}, "close tunnels you no longer need", "at most 3"},
		{&awsapi.APIError{Operation: "DescribeTunnel", Code: awsapi.CodeResourceNotFound, StatusCode: 400,
			Message: "Tunnel abc not found"}, "check the tunnel ID with `tunnelctl list`", ""},
	}
	for _, tc := range tests {
		got := describeError(tc.err)
		if !strings.Contains(got, tc.want) || (tc.not != "" && strings.Contains(got, tc.not)) {
			t.Errorf("describeError(%+v) = %q; want %q, not %q", tc.err, got, tc.want, tc.not)
		}
	}
}

// TestHelpTexts: commands that refuse --json do not list it; version is listed.
func TestHelpTexts(t *testing.T) {
	for _, cmd := range []string{"ssh", "demo", "connect", "ssh-config", "completion"} {
		r := runCLI(t, nil, cmd, "--help")
		if r.code != ExitOK || strings.Contains(r.stderr, "-json") {
			t.Errorf("%s --help: exit %d, lists -json:\n%s", cmd, r.code, r.stderr)
		}
	}
	if r := runCLI(t, nil, "open", "--help"); !strings.Contains(r.stderr, "-json") {
		t.Errorf("open --help lacks -json:\n%s", r.stderr)
	}
	r := runCLI(t, nil, "help")
	for _, want := range []string{"version", "connect", "ssh-config", "completion"} {
		if !strings.Contains(r.stderr, "\n  "+want+" ") {
			t.Errorf("help lacks %s:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, holderCommand) {
		t.Errorf("help lists the internal %s", holderCommand)
	}
	a := &App{Version: "1.2.3"}
	var out strings.Builder
	a.Stdout, a.Stderr = &out, &out
	if code := a.Run(context.Background(), []string{"version"}); code != 0 || out.String() != "tunnelctl 1.2.3\n" {
		t.Errorf("version: %d %q", code, out.String())
	}
}

// TestVerboseAPICommand: --verbose logs each request, without credentials or tokens.
func TestVerboseAPICommand(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCLIVERBOSE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "cli-secret-key")
	e := startEmulator(t, emulator.Config{})
	r := runCLI(t, nil, "--endpoint", e.APIURL(), "--verbose", "open", "--thing", "pi-v", "--service", "SSH", "--json").mustOK(t)
	var out awsapi.OpenTunnelOutput
	r.decode(t, &out)
	for _, want := range []string{"operation=OpenTunnel", "endpoint=" + e.APIURL(), "attempt=1", "status=200", "request_id="} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	for _, secret := range []string{"AKIDCLIVERBOSE", "cli-secret-key", out.SourceAccessToken, out.DestinationAccessToken} {
		if strings.Contains(r.stderr, secret) {
			t.Errorf("stderr holds a secret")
		}
	}
}

// TestEndpointFromEnvironmentAndProfile: without --endpoint the API endpoint comes
// from AWS_ENDPOINT_URL(_IOTSECURETUNNELING) or the profile, as with the AWS CLI,
// and a profile can hold the whole set (API, data plane, CA) for proxy.
func TestEndpointFromEnvironmentAndProfile(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	api := testAPI(t, e)
	runCLI(t, nil, "--endpoint", e.APIURL(), "open", "--thing", "pi-env", "--service", "SSH").mustOK(t)

	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1") // the service variable wins over it
	t.Setenv("AWS_ENDPOINT_URL_IOTSECURETUNNELING", e.APIURL())
	if r := runCLI(t, nil, "list", "--thing", "pi-env").mustOK(t); !strings.Contains(r.stdout, "OPEN") {
		t.Errorf("list through AWS_ENDPOINT_URL_IOTSECURETUNNELING:\n%s", r.stdout)
	}
	t.Setenv("AWS_ENDPOINT_URL_IOTSECURETUNNELING", "")
	t.Setenv("AWS_ENDPOINT_URL", "")

	cfg := "[profile emu]\nregion = us-east-1\nendpoint_url = " + e.APIURL() + "\ntunnel_data_endpoint = " + e.DataEndpoint() +
		"\nca_bundle = " + e.CAFile() + "\n"
	if err := os.WriteFile(os.Getenv("AWS_CONFIG_FILE"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var open awsapi.OpenTunnelOutput
	runCLI(t, nil, "--profile", "emu", "open", "--thing", "pi-prof", "--service", "SSH", "--json").mustOK(t).decode(t, &open)
	p := startProxyCLI(t, map[string]string{"AWSIOT_TUNNEL_ACCESS_TOKEN": open.SourceAccessToken}, "--profile", "emu", "--services", "SSH=0")
	if !tunneltest.Poll(20*time.Second, func() bool {
		d, err := api.DescribeTunnel(context.Background(), &awsapi.DescribeTunnelInput{TunnelID: open.TunnelID})
		return err == nil && d.Tunnel.SourceConnectionState != nil && d.Tunnel.SourceConnectionState.Status == awsapi.StatusConnected
	}) {
		r := p.stop(t)
		t.Fatalf("the proxy did not connect with the profile's data endpoint and CA:\n%s", r.stderr)
	}
	p.stop(t)
}

func TestOpenTokenFilesJSONHasNoTokenFields(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	r := runCLI(t, nil, "--endpoint", e.APIURL(), "open", "--thing", "pi-1", "--service", "SSH",
		"--token-file-dir", filepath.Join(t.TempDir(), "tok"), "--json").mustOK(t)
	if strings.Contains(r.stdout, "AccessToken\"") || !strings.Contains(r.stdout, "sourceAccessTokenFile") {
		t.Errorf("JSON with token files:\n%s", r.stdout)
	}
}

// TestOpenAfterServerErrorLeavesOneTunnel: OpenTunnel through a proxy that answers
// 500 after the emulator created the tunnel; tunnelctl open succeeds and
// tunnelctl list shows exactly one tunnel.
func TestOpenAfterServerErrorLeavesOneTunnel(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	front := lossyFront(t, e.APIURL(), "OpenTunnel")
	var out awsapi.OpenTunnelOutput
	runCLI(t, nil, "--endpoint", front, "open", "--thing", "pi-500", "--service", "SSH", "--json").mustOK(t).decode(t, &out)
	var list struct {
		TunnelSummaries []awsapi.TunnelSummary `json:"tunnelSummaries"`
	}
	runCLI(t, nil, "--endpoint", e.APIURL(), "list", "--thing", "pi-500", "--json").mustOK(t).decode(t, &list)
	if len(list.TunnelSummaries) != 1 || list.TunnelSummaries[0].TunnelID != out.TunnelID || out.SourceAccessToken == "" {
		t.Errorf("after a 500: %d tunnels %+v, opened %s", len(list.TunnelSummaries), list.TunnelSummaries, out.TunnelID)
	}
}

// TestCABundleForTLSAPI: an emulator serving its API over TLS is refused
// without a CA bundle and reached with AWS_CA_BUNDLE, as with the AWS CLI.
func TestCABundleForTLSAPI(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{APITLS: true})
	r := runCLI(t, nil, "--endpoint", e.APIURL(), "list")
	r.oneLineErr(t, ExitFailure, "AWS_CA_BUNDLE")
	t.Setenv("AWS_CA_BUNDLE", e.CAFile())
	if r := runCLI(t, nil, "--endpoint", e.APIURL(), "list").mustOK(t); !strings.Contains(r.stdout, "No tunnels.") {
		t.Errorf("list with AWS_CA_BUNDLE: %q", r.stdout)
	}
}
