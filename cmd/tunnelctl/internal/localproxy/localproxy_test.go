package localproxy

import (
	"maps"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
)

func TestLocalproxyParse(t *testing.T) {
	region := map[string]string{EnvRegion: "eu-west-1"}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want tunnel.Config // Mode, Endpoint, Region, Services, DestinationClientType
		verb int
	}{
		{"v1 source", nil, []string{"-r", "us-east-1", "-s", "5555"},
			tunnel.Config{Mode: tunnel.ModeSource, Region: "us-east-1", Services: map[string]string{"": "localhost:5555"}}, 4},
		{"long forms with =", nil, []string{"--region=us-east-1", "--source-listen-port=SSH=5555,HTTP=0", "--verbose=5"},
			tunnel.Config{Mode: tunnel.ModeSource, Region: "us-east-1", Services: map[string]string{"SSH": "localhost:5555", "HTTP": "localhost:0"}}, 5},
		{"long forms with space", nil, []string{"--region", "us-east-1", "--source-listen-port", " SSH = 5555 , ,RDP=3389", "--verbose", "0"},
			tunnel.Config{Mode: tunnel.ModeSource, Region: "us-east-1", Services: map[string]string{"SSH": "localhost:5555", "RDP": "localhost:3389"}}, 0},
		{"adjacent short values", nil, []string{"-rus-east-1", "-s5555", "-v6"},
			tunnel.Config{Mode: tunnel.ModeSource, Region: "us-east-1", Services: map[string]string{"": "localhost:5555"}}, 6},
		{"long name prefix", nil, []string{"--reg", "us-east-1", "--source", "5555"},
			tunnel.Config{Mode: tunnel.ModeSource, Region: "us-east-1", Services: map[string]string{"": "localhost:5555"}}, 4},
		{"bind, mode, client type", nil, []string{"-e", "Tunnel.Example:8443", "-s", "SSH=0", "-b", "0.0.0.0", "-m", "src", "-y", "V1"},
			tunnel.Config{Mode: tunnel.ModeSource, Endpoint: "tunnel.example:8443", Services: map[string]string{"SSH": "0.0.0.0:0"}, DestinationClientType: "V1"}, 4},
		{"source host:port", nil, []string{"-r", "us-east-1", "-s", "SSH=127.0.0.2:2222", "--mode", "source", "-y", "v2"},
			tunnel.Config{Mode: tunnel.ModeSource, Region: "us-east-1", Services: map[string]string{"SSH": "127.0.0.2:2222"}, DestinationClientType: "V2"}, 4},
		{"other client type is V3", nil, []string{"-r", "us-east-1", "-s", "5555", "--destination-client-type", "V9"},
			tunnel.Config{Mode: tunnel.ModeSource, Region: "us-east-1", Services: map[string]string{"": "localhost:5555"}, DestinationClientType: "V3"}, 4},
		{"device client form", nil, []string{"-r", "us-east-1", "-d", "localhost:22", "--destination-client-type", "V1", "-v", "2"},
			tunnel.Config{Mode: tunnel.ModeDestination, Region: "us-east-1", Services: map[string]string{"": "localhost:22"}}, 2},
		{"v1 destination port", nil, []string{"-e", "127.0.0.1:8443", "-d", "22", "-m", "dst"},
			tunnel.Config{Mode: tunnel.ModeDestination, Endpoint: "127.0.0.1:8443", Services: map[string]string{"": "localhost:22"}}, 4},
		{"named destinations", nil, []string{"-e", "h", "--destination-app", "SSH=10.0.0.1:22,HTTP=80,SOCK=/run/app.sock,a:b_c-d=8080", "--mode=destination"},
			tunnel.Config{Mode: tunnel.ModeDestination, Endpoint: "h", Services: map[string]string{
				"SSH": "10.0.0.1:22", "HTTP": "localhost:80", "SOCK": "unix:/run/app.sock", "a:b_c-d": "localhost:8080"}}, 4},
		{"unix socket unnamed", nil, []string{"-e", "h", "-d", "/tmp/x.sock"},
			tunnel.Config{Mode: tunnel.ModeDestination, Endpoint: "h", Services: map[string]string{"": "unix:/tmp/x.sock"}}, 4},
		{"region from env", region, []string{"-s", "1"},
			tunnel.Config{Mode: tunnel.ModeSource, Region: "eu-west-1", Services: map[string]string{"": "localhost:1"}}, 4},
		{"endpoint flag beats env region", region, []string{"-s", "1", "-e", "h:1"},
			tunnel.Config{Mode: tunnel.ModeSource, Endpoint: "h:1", Services: map[string]string{"": "localhost:1"}}, 4},
		{"endpoint from env", map[string]string{EnvEndpoint: "h:2"}, []string{"-s", "1"},
			tunnel.Config{Mode: tunnel.ModeSource, Endpoint: "h:2", Services: map[string]string{"": "localhost:1"}}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lp, err := Parse(tc.args, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			got := lp.Session
			if got.Mode != tc.want.Mode || got.Endpoint != tc.want.Endpoint || got.Region != tc.want.Region ||
				got.DestinationClientType != tc.want.DestinationClientType || !maps.Equal(got.Services, tc.want.Services) || lp.Verbosity != tc.verb {
				t.Errorf("got mode %v endpoint %q region %q type %q services %v verbosity %d\nwant %v %q %q %q %v %d",
					got.Mode, got.Endpoint, got.Region, got.DestinationClientType, got.Services, lp.Verbosity,
					tc.want.Mode, tc.want.Endpoint, tc.want.Region, tc.want.DestinationClientType, tc.want.Services, tc.verb)
			}
		})
	}
}
