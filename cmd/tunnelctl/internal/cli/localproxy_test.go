package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/cmd/tunnelctl/internal/localproxy"
)

// secret stands for a token typed on the command line; no output may hold it.
const secret = "SECRETtoken0123456789"

func TestLocalproxyRefusals(t *testing.T) {
	token := map[string]string{localproxy.EnvAccessToken: "x"}
	emptyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(emptyDir, "README"), []byte("no certificate here"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := []string{"-r", "us-east-1", "-s", "5555"}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"access token", nil, []string{"-t", secret, "-r", "us-east-1", "-s", "5555"}, ExitUsage, "set the AWSIOT_TUNNEL_ACCESS_TOKEN environment variable"},
		{"access token adjacent", nil, []string{"-t" + secret}, ExitUsage, "-t/--access-token is refused"},
		{"access token long", nil, []string{"--access-token=" + secret}, ExitUsage, "-t/--access-token is refused"},
		{"access token prefix", nil, []string{"-s", "1", "--access", secret}, ExitUsage, "-t/--access-token is refused"},
		{"client token", token, []string{"-i", secret}, ExitUsage, "set the AWSIOT_TUNNEL_CLIENT_TOKEN environment variable"},
		{"client token long", token, []string{"--client-token", secret}, ExitUsage, "-i/--client-token is refused"},
		{"no ssl host verify", token, append([]string{"-k"}, src...), ExitUsage, "-k/--no-ssl-host-verify is not supported: pass the directory holding the endpoint's CA certificate with -c DIR"},
		{"config", token, []string{"--config", "x.ini"}, ExitUsage, "--config is not supported by tunnelctl localproxy: pass the settings as flags"},
		{"config-dir", token, []string{"--config-dir=x"}, ExitUsage, "--config-dir is not supported by tunnelctl localproxy: pass the settings as flags"},
		{"settings-json", token, []string{"--settings-json", "x"}, ExitUsage, "--settings-json is not supported"},
		{"export-default-settings", token, []string{"--export-default-settings", "x"}, ExitUsage, "--export-default-settings is not supported"},
		{"both -s and -d", token, []string{"-r", "us-east-1", "-s", "1", "-d", "2"}, ExitUsage, "give only one of -s/--source-listen-port and -d/--destination-app"},
		{"neither -s nor -d", token, []string{"-r", "us-east-1", "-m", "src"}, ExitUsage, "give -s/--source-listen-port (source mode) or -d/--destination-app"},
		{"-m dst with -s", token, []string{"-r", "us-east-1", "-s", "1", "-m", "dst"}, ExitUsage, "disagree: -s is source mode"},
		{"-m source with -d", token, []string{"-r", "us-east-1", "-d", "1", "--mode=source"}, ExitUsage, "disagree: -d is destination mode"},
		{"-m unknown", token, []string{"-r", "us-east-1", "-d", "1", "-m", "both"}, ExitUsage, "use src, source, dst or destination"},
		{"both -e and -r", token, []string{"-r", "us-east-1", "-e", "h", "-s", "1"}, ExitUsage, "give only one of -e/--proxy-endpoint and -r/--region"},
		{"both in env", map[string]string{localproxy.EnvRegion: "us-east-1", localproxy.EnvEndpoint: "h"}, []string{"-s", "1"}, ExitUsage, "give only one of -e"},
		{"neither -e nor -r", token, []string{"-s", "1"}, ExitUsage, "give one of -r/--region (or AWSIOT_TUNNEL_REGION)"},
		{"bad region", token, []string{"-r", "US_EAST_1", "-s", "1"}, ExitUsage, "a region like us-east-1"},
		{"bad source port", token, []string{"-r", "us-east-1", "-s", "SSH=70000"}, ExitUsage, "source port \"70000\" must be 0-65535"},
		{"bad destination port", token, []string{"-r", "us-east-1", "-d", "0"}, ExitUsage, "port 1-65535"},
		{"bad destination", token, []string{"-r", "us-east-1", "-d", "SSH=host:ssh"}, ExitUsage, "give PORT, HOST:PORT"},
		{"bad service id", token, []string{"-r", "us-east-1", "-s", "S S=1"}, ExitUsage, "service id \"S S\""},
		{"unnamed among named", token, []string{"-r", "us-east-1", "-s", "5555,SSH=1"}, ExitUsage, "name every service"},
		{"service twice", token, []string{"-r", "us-east-1", "-s", "SSH=1,SSH=2"}, ExitUsage, "service SSH given twice"},
		{"option twice", token, []string{"-r", "us-east-1", "-s", "1", "--source-listen-port", "2"}, ExitUsage, "given more than once"},
		{"bind in destination", token, []string{"-r", "us-east-1", "-d", "22", "-b", "0.0.0.0"}, ExitUsage, "source mode only"},
		{"bad verbosity", token, append([]string{"-v", "loud"}, src...), ExitUsage, "-v/--verbose"},
		{"missing value", token, []string{"-s", "1", "-r"}, ExitUsage, "option -r/--region needs a value"},
		{"unknown short", token, []string{"-x", secret}, ExitUsage, "unknown option -x"},
		{"unknown long", token, []string{"--secret=" + secret}, ExitUsage, "unknown option --secret"},
		{"ambiguous long", token, []string{"--dest", "22"}, ExitUsage, "--dest is ambiguous"},
		{"switch with value", token, []string{"--help=yes"}, ExitUsage, "--help takes no value"},
		{"positional", token, append(src, secret), ExitUsage, "unexpected argument at position 5"},
		{"no token", nil, src, ExitFailure, "no access token: set the AWSIOT_TUNNEL_ACCESS_TOKEN environment variable"},
		{"capath without certificates", token, append([]string{"-c", emptyDir}, src...), ExitFailure, "holds no PEM certificate"},
		{"capath missing", token, append([]string{"-c", filepath.Join(emptyDir, "nope")}, src...), ExitFailure, "reading -c/--capath"},
		{"bad client token env", map[string]string{localproxy.EnvAccessToken: "x", localproxy.EnvClientToken: "short"}, []string{"-r", "us-east-1", "-s", "0"},
			ExitFailure, "client token must be 32-128 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.env, append([]string{"localproxy"}, tc.args...)...)
			r.oneLineErr(t, tc.code, tc.want)
			if strings.Contains(r.stderr+r.stdout, secret) {
				t.Errorf("the command line's secret was echoed: %q", r.stderr)
			}
		})
	}
}

func TestLocalproxyHelpVersionArgv0(t *testing.T) {
	tests := []struct {
		argv       []string
		stdout     string // prefix
		stderr     string // substring
		code       int
		viaVersion bool
	}{
		{[]string{"/usr/local/bin/localproxy", "-V"}, "localproxy (tunnelctl) 1.2.3\n", "", 0, true},
		{[]string{`C:\bin\localproxy.exe`, "--version"}, "localproxy (tunnelctl) 1.2.3\n", "", 0, true},
		{[]string{"tunnelctl", "localproxy", "-hV"}, "", "Usage: tunnelctl localproxy [options]", 0, false},
		{[]string{"localproxy", "--help"}, "", "-y, --destination-client-type ARG", 0, false},
		{[]string{"tunnelctl", "version"}, "tunnelctl 1.2.3\n", "", 0, true},
		{[]string{"localproxy", "version"}, "", "unexpected argument at position 1", ExitUsage, false},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.argv, " "), func(t *testing.T) {
			var out, errb tunneltest.SyncBuffer
			a := &App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, Version: "1.2.3"}
			code := a.Main(context.Background(), tc.argv)
			if code != tc.code || !strings.HasPrefix(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
			}
		})
	}
}
