package awsapi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

func TestPickEndpointPrecedence(t *testing.T) {
	all := EndpointInputs{Flag: "F", ServiceEnv: "SE", GlobalEnv: "GE", ProfileService: "PS", Profile: "P"}
	tests := []struct {
		name       string
		drop       []string // sources left out of all
		ignore     bool
		want, from string
	}{
		{"flag beats everything", nil, false, "F", "--endpoint"},
		{"service env beats global env", []string{"F"}, false, "SE", EnvServiceEndpoint},
		{"global env beats the profile", []string{"F", "SE"}, false, "GE", EnvGlobalEndpoint},
		{"profile services section beats profile", []string{"F", "SE", "GE"}, false, "PS", "services section"},
		{"profile endpoint_url last", []string{"F", "SE", "GE", "PS"}, false, "P", "endpoint_url"},
		{"nothing: regional", []string{"F", "SE", "GE", "PS", "P"}, false, "", ""},
		{"ignore keeps the flag", nil, true, "F", "--endpoint"},
		{"ignore drops env and profile", []string{"F"}, true, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := all
			for _, d := range tc.drop {
				switch d {
				case "F":
					in.Flag = ""
				case "SE":
					in.ServiceEnv = ""
				case "GE":
					in.GlobalEnv = ""
				case "PS":
					in.ProfileService = ""
				case "P":
					in.Profile = ""
				}
			}
			in.Ignore = tc.ignore
			got, from := PickEndpoint(in)
			if got != tc.want || !strings.Contains(from, tc.from) {
				t.Errorf("PickEndpoint = %q from %q, want %q from %q", got, from, tc.want, tc.from)
			}
		})
	}
}

// TestLoadEndpointPrecedence resolves the endpoint through Load from real
// environment variables and a real shared config file, as the AWS CLI would.
func TestLoadEndpointPrecedence(t *testing.T) {
	const profileCfg = `[profile emu]
region = eu-west-1
endpoint_url = http://127.0.0.1:1004
services = emu-services
tunnel_data_endpoint = 127.0.0.1:9443

[profile plain]
region = eu-west-1
endpoint_url = http://127.0.0.1:1005

[profile ignoring]
region = eu-west-1
endpoint_url = http://127.0.0.1:1005
ignore_configured_endpoint_urls = true

[services emu-services]
iotsecuretunneling =
  endpoint_url = http://127.0.0.1:1003
`
	tests := []struct {
		name    string
		profile string
		flag    string
		env     map[string]string
		want    string
	}{
		{"flag", "emu", "http://127.0.0.1:1000", map[string]string{EnvServiceEndpoint: "http://127.0.0.1:1001", EnvGlobalEndpoint: "http://127.0.0.1:1002"}, "http://127.0.0.1:1000"},
		{"service env", "emu", "", map[string]string{EnvServiceEndpoint: "http://127.0.0.1:1001", EnvGlobalEndpoint: "http://127.0.0.1:1002"}, "http://127.0.0.1:1001"},
		{"global env", "emu", "", map[string]string{EnvGlobalEndpoint: "http://127.0.0.1:1002"}, "http://127.0.0.1:1002"},
		{"services section", "emu", "", nil, "http://127.0.0.1:1003"},
		{"profile endpoint_url", "plain", "", nil, "http://127.0.0.1:1005"},
		{"ignore by env", "emu", "", map[string]string{EnvIgnoreEndpoints: "true", EnvGlobalEndpoint: "http://127.0.0.1:1002"}, "https://api.tunneling.iot.eu-west-1.amazonaws.com"},
		{"ignore by profile", "ignoring", "", nil, "https://api.tunneling.iot.eu-west-1.amazonaws.com"},
		{"ignore keeps the flag", "ignoring", "http://127.0.0.1:1000", map[string]string{EnvIgnoreEndpoints: "true"}, "http://127.0.0.1:1000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := isolateAWSEnv(t)
			t.Setenv(EnvServiceEndpoint, "")
			t.Setenv(EnvIgnoreEndpoints, "")
			if err := os.WriteFile(filepath.Join(dir, "config"), []byte(profileCfg), 0o600); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := Load(context.Background(), LoadOptions{Profile: tc.profile, Endpoint: tc.flag})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Endpoint() != tc.want {
				t.Errorf("endpoint %q (from %q), want %q", c.Endpoint(), c.Settings().EndpointSource, tc.want)
			}
			if tc.profile == "emu" && c.Settings().DataEndpoint != "127.0.0.1:9443" {
				t.Errorf("profile data endpoint %q", c.Settings().DataEndpoint)
			}
		})
	}
}

func TestLoadBadConfiguredEndpoint(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv(EnvGlobalEndpoint, "127.0.0.1:8440")
	_, err := Load(context.Background(), LoadOptions{})
	if !errors.Is(err, ErrBadEndpoint) || !strings.Contains(err.Error(), EnvGlobalEndpoint) {
		t.Errorf("err = %v, want ErrBadEndpoint naming %s", err, EnvGlobalEndpoint)
	}
}

func TestDataEndpointFor(t *testing.T) {
	tests := []struct {
		api, want string
		ok        bool
	}{
		{"https://api.tunneling.iot.eu-west-1.amazonaws.com", "data.tunneling.iot.eu-west-1.amazonaws.com:443", true},
		{"https://api.tunneling.iot.cn-north-1.amazonaws.com.cn", "data.tunneling.iot.cn-north-1.amazonaws.com.cn:443", true},
		{"http://127.0.0.1:8440", "127.0.0.1:8443", true},
		{"https://localhost:8440/", "localhost:8443", true},
		{"http://127.0.0.1:9000", "", false},
		{"https://vpce-123.api.tunneling.iot.eu-west-1.vpce.amazonaws.com", "", false},
		{"https://api.tunneling.iot.eu-west-1.amazonaws.com:8443", "", false},
		{"http://10.0.0.5:8440", "", false},
	}
	for _, tc := range tests {
		got, ok := DataEndpointFor(tc.api)
		if got != tc.want || ok != tc.ok {
			t.Errorf("DataEndpointFor(%q) = %q, %v; want %q, %v", tc.api, got, ok, tc.want, tc.ok)
		}
	}
}

// startEmulator runs a real emulator on loopback for the test.
func startEmulator(t *testing.T, cfg emulator.Config) *emulator.Emulator {
	t.Helper()
	cfg.StateDir = t.TempDir()
	cfg.Logger = slog.New(slog.DiscardHandler)
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("emulator: %v", err)
		}
	})
	return e
}

// TestCABundle reaches an emulator whose API is served over TLS with its own CA:
// refused without a bundle, accepted with AWS_CA_BUNDLE or the profile's ca_bundle.
func TestCABundle(t *testing.T) {
	e := startEmulator(t, emulator.Config{APITLS: true})
	if !strings.HasPrefix(e.APIURL(), "https://") {
		t.Fatalf("API URL %s is not https", e.APIURL())
	}
	list := func(profile string) error {
		c, err := Load(context.Background(), LoadOptions{Endpoint: e.APIURL(), Profile: profile})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.ListTunnels(context.Background(), &ListTunnelsInput{})
		return err
	}
	t.Run("none", func(t *testing.T) {
		isolateAWSEnv(t)
		if err := list(""); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("err = %v, want an unknown-authority error", err)
		}
	})
	t.Run("AWS_CA_BUNDLE", func(t *testing.T) {
		isolateAWSEnv(t)
		t.Setenv(EnvCABundle, e.CAFile())
		if err := list(""); err != nil {
			t.Error(err)
		}
	})
	t.Run("profile ca_bundle", func(t *testing.T) {
		dir := isolateAWSEnv(t)
		t.Setenv(EnvCABundle, "")
		cfg := "[profile emu]\nca_bundle = " + e.CAFile() + "\n"
		if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := list("emu"); err != nil {
			t.Error(err)
		}
	})
	t.Run("not PEM", func(t *testing.T) {
		dir := isolateAWSEnv(t)
		bad := filepath.Join(dir, "bad.pem")
		if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv(EnvCABundle, bad)
		err := list("")
		if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), EnvCABundle) {
			t.Errorf("err = %v, want one naming %s and %s", err, bad, EnvCABundle)
		}
	})
}

// TestVerboseLogsRequestsWithoutSecrets checks the Debug request log: operation,
// endpoint, region, attempt, status and request id, never a credential or token.
func TestVerboseLogsRequestsWithoutSecrets(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDVERBOSE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "very-secret-key")
	t.Setenv("AWS_SESSION_TOKEN", "session-token-secret")
	e := startEmulator(t, emulator.Config{Region: "eu-west-1"}) // the emulator checks the SigV4 scope
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := Load(context.Background(), LoadOptions{Endpoint: e.APIURL(), Region: "eu-west-1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, err := c.OpenTunnel(context.Background(), &OpenTunnelInput{DestinationConfig: &DestinationConfig{ThingName: "v", Services: []string{"SSH"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeTunnel(context.Background(), &DescribeTunnelInput{TunnelID: "nope"}); err == nil {
		t.Fatal("describe of an unknown tunnel succeeded")
	}
	got := buf.String()
	for _, want := range []string{"operation=OpenTunnel", "endpoint=" + e.APIURL(), "region=eu-west-1", "attempt=1",
		"status=200", "request_id=", "operation=DescribeTunnel", "status=400", "code=ResourceNotFoundException", "source=--endpoint"} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	for _, secret := range []string{"AKIDVERBOSE", "very-secret-key", "session-token-secret", out.SourceAccessToken, out.DestinationAccessToken} {
		if strings.Contains(got, secret) {
			t.Errorf("log holds a secret %q", secret)
		}
	}
}
