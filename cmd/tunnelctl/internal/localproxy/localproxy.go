package localproxy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// Environment variables of the C++ localproxy.
const (
	EnvAccessToken = "AWSIOT_TUNNEL_ACCESS_TOKEN"
	EnvClientToken = "AWSIOT_TUNNEL_CLIENT_TOKEN"
	EnvEndpoint    = "AWSIOT_TUNNEL_ENDPOINT"
	EnvRegion      = "AWSIOT_TUNNEL_REGION"
	// EnvClientTokenOld is the name C++ localproxy 2.x reads.
	EnvClientTokenOld = "AWSIOT_CLIENT_TOKEN"
)

// maxEndpointLen is a DNS name's limit plus ":65535".
const maxEndpointLen = 253 + 6

// slog levels beyond the standard four, for -v 1 (fatal) and -v 6+ (trace).
const (
	levelFatal = slog.LevelError + 4
	levelTrace = slog.LevelDebug - 4
)

// ErrNoToken: the access token comes only from the environment.
var ErrNoToken = errors.New("no access token: set the AWSIOT_TUNNEL_ACCESS_TOKEN environment variable " +
	"(tokens are never taken from the command line, which other users see in ps)")

// regionRe is the C++ localproxy's own check of -r (PROTOCOL.md §7.2,
// region (LP)): looser than an AWS region name, so that what it accepts,
// this command line accepts too.
var regionRe = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Config is a parsed localproxy command line.
type Config struct {
	Help, Version bool          // -h, -V: nothing else was checked
	Session       tunnel.Config // without secrets, RootCAs and Logger
	CAPath        string        // -c
	Verbosity     int           // -v, the C++ levels 0-255
	// IgnoredType: -y in destination mode, where the source's subprotocol decides.
	IgnoredType bool
}

// Parse turns a C++ localproxy command line (and its environment
// variables) into a session config.
func Parse(args []string, getenv func(string) string) (*Config, error) {
	got, err := scan(args)
	if err != nil {
		return nil, err
	}
	lp := &Config{Verbosity: 4, CAPath: got["capath"]}
	if _, lp.Help = got["help"]; lp.Help {
		return lp, nil
	}
	if _, lp.Version = got["version"]; lp.Version {
		return lp, nil
	}
	if v, ok := got["verbose"]; ok {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return nil, usageError("-v/--verbose %q: give a level 0-255 (0 off ... 4 info, 5 debug, 6 trace)", v)
		}
		lp.Verbosity = int(n)
	}
	if err := endpoint(&lp.Session, got, getenv); err != nil {
		return nil, err
	}
	if lp.Session.Mode, err = mode(got); err != nil {
		return nil, err
	}
	bind, hasBind := got["local-bind-address"]
	if lp.Session.Mode == tunnel.ModeSource {
		if !hasBind {
			bind = "localhost"
		}
		lp.Session.Services, err = mappings(got["source-listen-port"], func(v string) (string, error) { return sourceAddr(v, bind) })
		if err == nil && got["destination-client-type"] != "" {
			lp.Session.DestinationClientType = clientType(got["destination-client-type"])
		}
	} else {
		if hasBind {
			return nil, usageError("-b/--local-bind-address applies to source mode only (tunnelctl does not bind destination connections)")
		}
		_, lp.IgnoredType = got["destination-client-type"]
		lp.Session.Services, err = mappings(got["destination-app"], destinationAddr)
	}
	return lp, err
}

// endpoint sets exactly one of Endpoint and Region, from the flags or else
// the environment.
func endpoint(cfg *tunnel.Config, got given, getenv func(string) string) error {
	ep, hasEp := got["proxy-endpoint"]
	region, hasRegion := got["region"]
	if !hasEp && !hasRegion {
		ep, region = getenv(EnvEndpoint), getenv(EnvRegion)
		hasEp, hasRegion = ep != "", region != ""
	}
	switch {
	case hasEp && hasRegion:
		return usageError("give only one of -e/--proxy-endpoint and -r/--region")
	case hasEp:
		if ep == "" || len(ep) > maxEndpointLen {
			return usageError("-e/--proxy-endpoint %q: give host[:port], e.g. data.tunneling.iot.us-east-1.amazonaws.com:443", ep)
		}
		cfg.Endpoint = strings.ToLower(ep)
	case hasRegion:
		if !regionRe.MatchString(region) {
			return usageError("-r/--region %q: give a region like us-east-1 (a-z, 0-9 and '-', up to 64)", region)
		}
		cfg.Region = region
	default:
		return usageError("give one of -r/--region (or AWSIOT_TUNNEL_REGION) and -e/--proxy-endpoint (or AWSIOT_TUNNEL_ENDPOINT)")
	}
	return nil
}

// mode picks source or destination from -s, -d and -m.
func mode(got given) (tunnel.Mode, error) {
	_, src := got["source-listen-port"]
	_, dst := got["destination-app"]
	m, hasMode := got["mode"]
	var want tunnel.Mode
	switch m {
	case "src", "source":
		want = tunnel.ModeSource
	case "dst", "destination":
		want = tunnel.ModeDestination
	default:
		if hasMode {
			return 0, usageError("-m/--mode %q: use src, source, dst or destination", m)
		}
	}
	switch {
	case src && dst:
		return 0, usageError("give only one of -s/--source-listen-port and -d/--destination-app")
	case !src && !dst:
		return 0, usageError("give -s/--source-listen-port (source mode) or -d/--destination-app (destination mode)")
	case src && hasMode && want != tunnel.ModeSource:
		return 0, usageError("-s/--source-listen-port and --mode %s disagree: -s is source mode", m)
	case dst && hasMode && want != tunnel.ModeDestination:
		return 0, usageError("-d/--destination-app and --mode %s disagree: -d is destination mode", m)
	case src:
		return tunnel.ModeSource, nil
	}
	return tunnel.ModeDestination, nil
}

// mappings parses "SVC1=v1,SVC2=v2" or a single unnamed "v" (the V1 format,
// service key "") and converts each value with addr.
func mappings(spec string, addr func(string) (string, error)) (map[string]string, error) {
	var items []string
	for item := range strings.SplitSeq(spec, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	if len(items) == 0 {
		return nil, usageError("no port mapping given: e.g. SSH=5555 or 5555")
	}
	out := map[string]string{}
	for _, item := range items {
		name, val, named := strings.Cut(item, "=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		switch {
		case !named && len(items) > 1:
			return nil, usageError("mapping %q has no service id: name every service when there are several, e.g. SSH1=5555,SSH2=6666", item)
		case !named:
			name, val = tunnel.Unnamed, item
		case !protocol.ValidServiceID(name):
			return nil, usageError("service id %q: use 1-128 of a-z, A-Z, 0-9, ':', '_' and '-'", name)
		case val == "":
			return nil, usageError("service %s has no port or address: e.g. %s=5555", name, name)
		}
		if _, dup := out[name]; dup {
			return nil, usageError("service %s given twice", name)
		}
		a, err := addr(val)
		if err != nil {
			return nil, err
		}
		out[name] = a
	}
	return out, nil
}

// sourceAddr turns "PORT" (on bind) or "HOST:PORT" into a listen address.
func sourceAddr(v, bind string) (string, error) {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		host, port = bind, v
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", usageError("source port %q must be 0-65535 (0: any free port)", v)
	}
	return net.JoinHostPort(host, port), nil
}

// destinationAddr turns "PORT" (on localhost), "HOST:PORT" or "/path.sock"
// into a dial address ("host:port" or "unix:/path").
func destinationAddr(v string) (string, error) {
	if strings.HasPrefix(v, "/") {
		return "unix:" + v, nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		host, port = "localhost", v
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return "", usageError("destination %q: give PORT, HOST:PORT (port 1-65535) or /path/to/unix.sock", v)
	}
	return net.JoinHostPort(host, port), nil
}

// clientType maps -y: V1 and V2 as given, any other value V3 (as in C++).
func clientType(v string) string {
	switch u := strings.ToUpper(strings.TrimSpace(v)); u {
	case "V1", "V2":
		return u
	}
	return "V3"
}

// Logger maps the C++ -v levels to a slog logger on w.
func Logger(w io.Writer, verbosity int) *slog.Logger {
	levels := []slog.Level{0, levelFatal, slog.LevelError, slog.LevelWarn, slog.LevelInfo, slog.LevelDebug}
	switch {
	case verbosity == 0:
		return slog.New(slog.DiscardHandler)
	case verbosity >= len(levels):
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: levelTrace}))
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: levels[verbosity]}))
}

// LoadCAPath returns the system roots plus every PEM certificate in the
// regular files of dir (OpenSSL's hashed names such as abcd1234.0 included).
func LoadCAPath(dir string) (*x509.CertPool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading -c/--capath: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	found := 0
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
			continue // directories, dangling links
		}
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading -c/--capath: %w", err)
		}
		if pool.AppendCertsFromPEM(pem) {
			found++
		}
	}
	if found == 0 {
		return nil, fmt.Errorf("-c/--capath %s holds no PEM certificate: put the endpoint's CA certificate (e.g. the emulator's ca.pem) in it", dir)
	}
	return pool, nil
}
