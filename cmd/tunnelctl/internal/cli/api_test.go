package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

func TestAPICommandsAgainstEmulator(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	ep := "--endpoint=" + e.APIURL()

	var open awsapi.OpenTunnelOutput
	runCLI(t, nil, "open", ep, "--thing", "pi-1", "--service", "SSH", "--service", "HTTP", "--lifetime", "30m",
		"--description", "maintenance window", "--tag", "team=ops", "--json").mustOK(t).decode(t, &open)
	if open.TunnelID == "" || open.SourceAccessToken == "" || open.DestinationAccessToken == "" {
		t.Fatalf("open: %+v", open)
	}
	id := open.TunnelID

	// Human output of open shows the tokens (the operator needs them).
	r := runCLI(t, nil, ep, "open", "--thing", "pi-2", "--service", "SSH").mustOK(t)
	if !strings.Contains(r.stdout, "Tunnel opened:") || !strings.Contains(r.stdout, "Source access token") {
		t.Errorf("open output:\n%s", r.stdout)
	}

	var desc awsapi.DescribeTunnelOutput
	runCLI(t, nil, "describe", id, ep, "--json").mustOK(t).decode(t, &desc)
	tu := desc.Tunnel
	if tu.Status != awsapi.StatusOpen || tu.DestinationConfig.ThingName != "pi-1" || len(tu.DestinationConfig.Services) != 2 ||
		tu.TimeoutConfig.MaxLifetimeTimeoutMinutes != 30 || tu.Description != "maintenance window" {
		t.Errorf("describe: %+v", tu)
	}
	r = runCLI(t, nil, "describe", id, ep).mustOK(t)
	for _, want := range []string{"Status:", "OPEN", "pi-1", "SSH, HTTP", "30m", "maintenance window", "team=ops"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("describe text lacks %q:\n%s", want, r.stdout)
		}
	}

	var list struct{ TunnelSummaries []awsapi.TunnelSummary }
	runCLI(t, nil, "list", ep, "--thing", "pi-1", "--json").mustOK(t).decode(t, &list)
	if len(list.TunnelSummaries) != 1 || list.TunnelSummaries[0].TunnelID != id {
		t.Errorf("list --thing pi-1: %+v", list)
	}
	r = runCLI(t, nil, "list", ep).mustOK(t)
	if strings.Count(r.stdout, "\n") != 3 || !strings.Contains(r.stdout, id) {
		t.Errorf("list text:\n%s", r.stdout)
	}

	runCLI(t, nil, "tag", ep, id, "env=lab", "owner=").mustOK(t)
	runCLI(t, nil, "untag", ep, tu.TunnelARN, "team").mustOK(t)
	var tags awsapi.ListTagsForResourceOutput
	runCLI(t, nil, "tags", ep, id, "--json").mustOK(t).decode(t, &tags)
	got := map[string]string{}
	for _, tg := range tags.Tags {
		got[tg.Key] = tg.Value
	}
	if got[awsapi.RequestTagKey] == "" {
		t.Errorf("tags lack the request tag of OpenTunnel: %v", got)
	}
	delete(got, awsapi.RequestTagKey)
	if len(got) != 2 || got["env"] != "lab" || got["owner"] != "" {
		t.Errorf("tags after tag/untag: %v", got)
	}

	var rot awsapi.RotateTunnelAccessTokenOutput
	runCLI(t, nil, "rotate", ep, id, "--mode", "source", "--json").mustOK(t).decode(t, &rot)
	if rot.SourceAccessToken == "" || rot.SourceAccessToken == open.SourceAccessToken || rot.DestinationAccessToken != "" {
		t.Errorf("rotate source: %+v", rot)
	}
	rot = awsapi.RotateTunnelAccessTokenOutput{}
	runCLI(t, nil, "rotate", ep, id, "--mode", "all", "--thing", "pi-1", "--service", "SSH,HTTP", "--json").mustOK(t).decode(t, &rot)
	if rot.SourceAccessToken == "" || rot.DestinationAccessToken == "" {
		t.Errorf("rotate all: %+v", rot)
	}

	runCLI(t, nil, "close", ep, id).mustOK(t)
	runCLI(t, nil, "describe", ep, id, "--json").mustOK(t).decode(t, &desc)
	if desc.Tunnel.Status != awsapi.StatusClosed {
		t.Errorf("after close: %s", desc.Tunnel.Status)
	}
	runCLI(t, nil, "close", ep, id, "--delete").mustOK(t)
	runCLI(t, nil, "describe", ep, id).oneLineErr(t, ExitFailure, "ResourceNotFoundException")
}

func TestAPIErrorsAgainstEmulator(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{MaxOpenTunnels: 1})
	ep := "--endpoint=" + e.APIURL()
	runCLI(t, nil, ep, "open", "--thing", "pi-1", "--service", "SSH").mustOK(t)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"limit", []string{"open", "--thing", "pi-1", "--service", "SSH"}, ExitFailure, "LimitExceededException"},
		{"describe unknown", []string{"describe", "nope"}, ExitFailure, "ResourceNotFoundException"},
		{"close unknown", []string{"close", "nope"}, ExitFailure, "not found"},
		{"rotate unknown", []string{"rotate", "nope", "--mode", "destination"}, ExitFailure, "ResourceNotFoundException"},
		{"tag unknown arn", []string{"tag", "arn:aws:tunnel:us-east-1:123456789012:tunnel/nope", "a=b"}, ExitFailure, "ResourceNotFoundException"},
		{"validation", []string{"tags", "arn:aws:tunnel:x", "--json"}, ExitFailure, "tunnelctl tags:"},
		{"bad service", []string{"rotate", "x", "--mode", "all", "--thing", "pi-1", "--service", "bad service!"}, ExitFailure, "tunnelctl rotate:"},
		{"no mode", []string{"rotate", "x"}, ExitUsage, "--mode must be"},
		{"lifetime too long", []string{"open", "--lifetime", "13h"}, ExitUsage, "between 1m and 12h"},
		{"thing without service", []string{"open", "--thing", "pi-1"}, ExitUsage, "--service"},
		{"bad tag", []string{"open", "--tag", "novalue"}, ExitUsage, "KEY=VALUE"},
		{"two ids", []string{"describe", "a", "b"}, ExitUsage, "exactly one"},
		{"unknown flag", []string{"list", "--nope"}, ExitUsage, "not defined"},
		{"source with thing", []string{"rotate", "x", "--mode", "source", "--thing", "t", "--service", "S"}, ExitUsage, "destination or all"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, nil, append([]string{ep}, tc.args...)...)
			r.oneLineErr(t, tc.code, tc.want)
		})
	}
	if r := runCLI(t, nil, "bogus"); r.code != ExitUsage {
		t.Errorf("unknown command: exit %d", r.code)
	}
}

func TestOpenTokenFiles(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	dir := filepath.Join(t.TempDir(), "tokens")
	var out struct {
		awsapi.OpenTunnelOutput
		SourceFile string `json:"sourceAccessTokenFile"`
		DestFile   string `json:"destinationAccessTokenFile"`
	}
	runCLI(t, nil, "--endpoint", e.APIURL(), "open", "--thing", "pi-1", "--service", "SSH",
		"--token-file-dir", dir, "--json").mustOK(t).decode(t, &out)
	if out.SourceAccessToken != "" || out.DestinationAccessToken != "" {
		t.Error("tokens printed although written to files")
	}
	for _, f := range []string{out.SourceFile, out.DestFile} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, st.Mode())
		}
	}
	a := &App{Getenv: func(string) string { return "" }}
	tok, err := a.readToken(out.SourceFile)
	if err != nil || len(tok) < 16 {
		t.Fatalf("readToken: %q %v", tok, err)
	}
	r := runCLI(t, nil, "--endpoint", e.APIURL(), "open", "--thing", "pi-1", "--service", "SSH", "--token-file-dir", dir).mustOK(t)
	if !strings.Contains(r.stdout, "written to") || strings.Contains(r.stdout, tok) {
		t.Errorf("text output:\n%s", r.stdout)
	}
	if err := os.Chmod(out.SourceFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.readToken(out.SourceFile); err == nil {
		t.Error("world-readable token file accepted")
	}
}

func TestParseHelpers(t *testing.T) {
	for m, want := range map[int]string{30: "30m", 120: "2h", 90: "1h30m", 720: "12h", 1: "1m"} {
		if got := fmtMinutes(m); got != want {
			t.Errorf("fmtMinutes(%d) = %q, want %q", m, got, want)
		}
	}
	for in, want := range map[string]int{"30m": 30, "2h": 120, "90": 90, "12h": 720, "1m": 1} {
		if got, err := parseLifetime(in); err != nil || got != want {
			t.Errorf("parseLifetime(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"30s", "0", "721m", "1m30s", "x"} {
		if _, err := parseLifetime(bad); err == nil {
			t.Errorf("parseLifetime(%q) accepted", bad)
		}
	}
}

func TestProfileAndHelp(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{Region: "eu-north-1"}) // the profile's region signs the requests
	cfgFile := os.Getenv("AWS_CONFIG_FILE")
	if err := os.WriteFile(cfgFile, []byte("[profile lab]\nregion = eu-north-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI(t, nil, "--profile", "lab", "list", "--endpoint", e.APIURL()).mustOK(t)
	runCLI(t, nil, "--profile", "nope", "list", "--endpoint", e.APIURL()).oneLineErr(t, ExitFailure, `profile "nope"`)
	for _, args := range [][]string{{"help"}, {"open", "-h"}, {"proxy", "--help"}} {
		if r := runCLI(t, nil, args...); r.code != ExitOK || !strings.Contains(r.stderr, "tunnelctl") {
			t.Errorf("%v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
}

func TestDemoCheckCommand(t *testing.T) {
	r := runCLI(t, nil, "demo", "--check")
	if r.code != ExitOK || !strings.Contains(r.stdout, "PASS") || !strings.Contains(r.stdout, "MiB/s") {
		t.Fatalf("demo --check: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
