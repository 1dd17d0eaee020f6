package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
)

// dataPlane is where the source side of a tunnel connects and how it verifies it.
type dataPlane struct {
	endpoint, source string // host:port and where it came from
	region           string // used by tunnel.Config when endpoint is ""
	caFile           string // appended to the system roots (--ca-file)
	roots            *x509.CertPool
}

// errNoDataEndpoint: the data plane could not be found out.
var errNoDataEndpoint = errors.New("no data-plane endpoint")

// resolveDataPlane picks the data-plane endpoint: --data-endpoint, then
// AWSIOT_TUNNEL_ENDPOINT, then the profile's tunnel_data_endpoint, then the one
// that goes with the API endpoint (awsapi.DataEndpointFor: the region's public
// endpoint, or the emulator's default ports). The CA: --ca-file (on top of the
// system roots), else AWS_CA_BUNDLE or the profile's ca_bundle (instead of them,
// as for the API), else, for the emulator's default endpoint, its default ca.pem.
func (a *App) resolveDataPlane(g *globals, c *awsapi.Client) (dataPlane, error) {
	set := c.Settings()
	d := dataPlane{region: set.Region, caFile: g.caFile}
	switch {
	case g.dataEndpoint != "":
		d.endpoint, d.source = g.dataEndpoint, "--data-endpoint"
	case a.Getenv("AWSIOT_TUNNEL_ENDPOINT") != "":
		d.endpoint, d.source = a.Getenv("AWSIOT_TUNNEL_ENDPOINT"), "AWSIOT_TUNNEL_ENDPOINT"
	case set.DataEndpoint != "":
		d.endpoint, d.source = set.DataEndpoint, "the profile's tunnel_data_endpoint"
	default:
		ep, ok := awsapi.DataEndpointFor(set.Endpoint)
		if !ok {
			return d, fmt.Errorf("%w: the API endpoint %s (from %s) has no data endpoint that goes with it: "+
				"pass --data-endpoint HOST:PORT or set tunnel_data_endpoint in the profile", errNoDataEndpoint, set.Endpoint, set.EndpointSource)
		}
		d.endpoint, d.source = ep, "derived from the API endpoint "+set.Endpoint
	}
	if strings.Contains(d.endpoint, "://") && !strings.HasPrefix(d.endpoint, "wss://") && !strings.HasPrefix(d.endpoint, "ws://") {
		return d, usageError("data endpoint %q (from %s): give HOST:PORT, not an API URL", d.endpoint, d.source)
	}
	if d.caFile == "" && set.CABundle != "" {
		pool, err := awsapi.LoadCABundle(set.CABundle, set.CABundleSource)
		if err != nil {
			return d, err
		}
		d.roots = pool
	}
	if d.caFile == "" && d.roots == nil && isEmulatorDefault(d.endpoint) {
		if ca := emulatorCA(a.Getenv); ca != "" {
			d.caFile = ca
		}
	}
	return d, nil
}

// isEmulatorDefault reports whether host:port is the emulator's default data plane.
func isEmulatorDefault(endpoint string) bool {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil || port != "8443" {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// emulatorCA is the CA of an emulator started with its default state directory
// ($XDG_STATE_HOME/tunnel-emulator or ~/.local/state/tunnel-emulator), "" when absent.
func emulatorCA(getenv func(string) string) string {
	dir := getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".local", "state")
	}
	ca := filepath.Join(dir, "tunnel-emulator", "ca.pem")
	if _, err := os.Stat(ca); err != nil {
		return ""
	}
	return ca
}
