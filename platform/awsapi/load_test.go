package awsapi

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// isolateAWSEnv points the SDK at empty shared files and clears credential variables.
func isolateAWSEnv(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IOTSECURETUNNELING", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_CA_BUNDLE",
		"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	return dir
}

func TestLoadProfileFromSharedFiles(t *testing.T) {
	dir := isolateAWSEnv(t)
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("config", "[profile ops]\nregion = ap-southeast-2\n")
	write("credentials", "[ops]\naws_access_key_id = AKIDOPS\naws_secret_access_key = s3cr3t\n")

	fs := &fakeService{body: `{"tunnelSummaries":[]}`}
	srv := newTestClient(t, fs) // only for its URL
	c, err := Load(context.Background(), LoadOptions{Profile: "ops", Endpoint: srv.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	if c.Region() != "ap-southeast-2" {
		t.Errorf("region %q, want the profile's", c.Region())
	}
	if _, err := c.ListTunnels(context.Background(), &ListTunnelsInput{}); err != nil {
		t.Fatal(err)
	}
	if auth := fs.last(t).header.Get("Authorization"); !strings.Contains(auth, "Credential=AKIDOPS/") ||
		!strings.Contains(auth, "/ap-southeast-2/IoTSecuredTunneling/") {
		t.Errorf("Authorization %q does not use the profile", auth)
	}
}

func TestLoadEnvAndRegionFlag(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "x")
	t.Setenv("AWS_REGION", "eu-central-1")
	c, err := Load(context.Background(), LoadOptions{Region: "cn-north-1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint() != "https://api.tunneling.iot.cn-north-1.amazonaws.com.cn" {
		t.Errorf("endpoint %q", c.Endpoint())
	}
}

func TestLoadErrors(t *testing.T) {
	isolateAWSEnv(t)
	if _, err := Load(context.Background(), LoadOptions{Profile: "missing"}); err == nil ||
		!strings.Contains(err.Error(), `profile "missing"`) {
		t.Errorf("missing profile: %v", err)
	}
	if _, err := Load(context.Background(), LoadOptions{}); err == nil {
		t.Error("no region and no endpoint accepted")
	}
}

func TestLoadLoopbackWithoutCredentials(t *testing.T) {
	isolateAWSEnv(t)
	fs := &fakeService{body: `{}`}
	srv := newTestClient(t, fs)
	c, err := Load(context.Background(), LoadOptions{Endpoint: srv.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CloseTunnel(context.Background(), &CloseTunnelInput{TunnelID: "t"}); err != nil {
		t.Fatal(err)
	}
	if auth := fs.last(t).header.Get("Authorization"); !strings.Contains(auth, "Credential=EMULATOR/") {
		t.Errorf("Authorization %q", auth)
	}
}
