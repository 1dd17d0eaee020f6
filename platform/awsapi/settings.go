package awsapi

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"
)

// SDKID is the service's SDK id. The AWS SDKs derive the service-specific endpoint
// settings from it: the environment variable AWS_ENDPOINT_URL_IOTSECURETUNNELING and
// the key "iotsecuretunneling" of a [services] section in the shared config file.
const SDKID = "IoTSecureTunneling"

// Names of the endpoint settings, as the AWS SDKs and the AWS CLI spell them.
const (
	EnvServiceEndpoint  = "AWS_ENDPOINT_URL_IOTSECURETUNNELING"
	EnvGlobalEndpoint   = "AWS_ENDPOINT_URL"
	EnvIgnoreEndpoints  = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
	EnvCABundle         = "AWS_CA_BUNDLE"
	ProfileDataEndpoint = "tunnel_data_endpoint" // tunnelctl's own profile key
)

// EndpointInputs are the configured API endpoints, one per source, and whether
// configured endpoints are to be ignored (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS or
// the profile's ignore_configured_endpoint_urls).
type EndpointInputs struct {
	Flag           string // --endpoint
	ServiceEnv     string // AWS_ENDPOINT_URL_IOTSECURETUNNELING
	GlobalEnv      string // AWS_ENDPOINT_URL
	ProfileService string // endpoint_url of the profile's [services] section for iotsecuretunneling
	Profile        string // the profile's endpoint_url
	Ignore         bool
}

// PickEndpoint applies the AWS SDKs' precedence for service-specific endpoints:
// the command-line flag, then AWS_ENDPOINT_URL_IOTSECURETUNNELING, AWS_ENDPOINT_URL,
// the profile's services section, the profile's endpoint_url. Ignore drops every
// configured source but the flag. It returns "" when none applies (the regional
// endpoint is used) and names the source it took.
func PickEndpoint(in EndpointInputs) (endpoint, source string) {
	if in.Flag != "" {
		return in.Flag, "--endpoint"
	}
	if in.Ignore {
		return "", ""
	}
	for _, c := range []struct{ v, src string }{
		{in.ServiceEnv, EnvServiceEndpoint},
		{in.GlobalEnv, EnvGlobalEndpoint},
		{in.ProfileService, "the profile's services section (iotsecuretunneling endpoint_url)"},
		{in.Profile, "the profile's endpoint_url"},
	} {
		if c.v != "" {
			return c.v, c.src
		}
	}
	return "", ""
}

// Settings are the resolved connection settings of a Client, for messages and
// for the data plane that goes with the API.
type Settings struct {
	Endpoint       string // the API URL requests go to
	EndpointSource string // where it came from ("" for the regional default)
	Region         string
	// CABundle is the PEM file that replaces the system roots (AWS_CA_BUNDLE or the
	// profile's ca_bundle), "" for none; CABundleSource names the source.
	CABundle, CABundleSource string
	// DataEndpoint is the profile's tunnel_data_endpoint (host:port), "" for none.
	DataEndpoint string
}

// sdkSources picks the environment and shared-config views out of the SDK's config sources.
func sdkSources(sources []any) (env *config.EnvConfig, shared *config.SharedConfig) {
	for _, s := range sources {
		switch v := s.(type) {
		case config.EnvConfig:
			env = &v
		case *config.EnvConfig:
			env = v
		case config.SharedConfig:
			shared = &v
		case *config.SharedConfig:
			shared = v
		}
	}
	if env == nil {
		env = &config.EnvConfig{}
	}
	if shared == nil {
		shared = &config.SharedConfig{}
	}
	return env, shared
}

// endpointInputs gathers the configured endpoints from the SDK's views.
func endpointInputs(ctx context.Context, flag string, env *config.EnvConfig, shared *config.SharedConfig) EndpointInputs {
	in := EndpointInputs{Flag: flag, GlobalEnv: env.BaseEndpoint, Profile: shared.BaseEndpoint}
	in.ServiceEnv, _, _ = env.GetServiceBaseEndpoint(ctx, SDKID)
	in.ProfileService, _, _ = shared.GetServiceBaseEndpoint(ctx, SDKID)
	switch {
	case env.IgnoreConfiguredEndpoints != nil:
		in.Ignore = *env.IgnoreConfiguredEndpoints
	case shared.IgnoreConfiguredEndpoints != nil:
		in.Ignore = *shared.IgnoreConfiguredEndpoints
	}
	return in
}

// caBundle returns the configured CA bundle file and its source.
func caBundle(env *config.EnvConfig, shared *config.SharedConfig) (file, source string) {
	if env.CustomCABundle != "" {
		return env.CustomCABundle, EnvCABundle
	}
	if shared.CustomCABundle != "" {
		return shared.CustomCABundle, "the profile's ca_bundle"
	}
	return "", ""
}

// LoadCABundle reads a PEM bundle into a new pool (the AWS convention: the bundle
// replaces the system roots). source names the setting for the error.
func LoadCABundle(file, source string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle of %s: %w", source, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA bundle %s (from %s) holds no PEM certificate: point it at a PEM file such as the emulator's ca.pem", file, source)
	}
	return pool, nil
}

// ValidateEndpoint checks an API endpoint URL and returns it without a trailing slash.
func ValidateEndpoint(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("endpoint %q: %w", s, ErrBadEndpoint)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Emulator defaults: its API and data-plane ports (cmd/tunnel-emulator's flags).
const (
	emulatorAPIPort  = "8440"
	emulatorDataPort = "8443"
)

// DataEndpointFor derives the data-plane host:port from an API endpoint where
// that is unambiguous: the public endpoint api.tunneling.iot.R.amazonaws.com[.cn]
// has data.tunneling.iot.R.amazonaws.com[.cn]:443, and the emulator on a loopback
// address with its default API port 8440 has its data plane on port 8443 of the
// same host. Anything else (a VPC endpoint, a proxy, other ports) needs the data
// endpoint given.
func DataEndpointFor(apiEndpoint string) (string, bool) {
	u, err := url.Parse(apiEndpoint)
	if err != nil {
		return "", false
	}
	host := u.Hostname()
	if rest, ok := strings.CutPrefix(host, "api.tunneling.iot."); ok && u.Port() == "" {
		if strings.HasSuffix(rest, ".amazonaws.com") || strings.HasSuffix(rest, ".amazonaws.com.cn") {
			return "data.tunneling.iot." + rest + ":443", true
		}
	}
	if isLoopbackHost(host) && u.Port() == emulatorAPIPort {
		return net.JoinHostPort(host, emulatorDataPort), true
	}
	return "", false
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// profileKey reads one key of a profile from the shared config file (AWS_CONFIG_FILE
// or ~/.aws/config): the SDK keeps only the keys it knows. "" when absent.
func profileKey(profile, key string) string {
	file := os.Getenv("AWS_CONFIG_FILE")
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		file = filepath.Join(home, ".aws", "config")
	}
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	return iniValue(f, profile, key)
}

// iniValue finds key in the section of profile ("[default]" or "[profile NAME]").
// A line longer than the scanner's 64 KiB ends the search.
func iniValue(r io.Reader, profile, key string) string {
	in := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			name := strings.TrimSpace(strings.Trim(line, "[]"))
			name = strings.TrimSpace(strings.TrimPrefix(name, "profile "))
			in = name == profile
			continue
		}
		if k, v, ok := strings.Cut(line, "="); in && ok && strings.TrimSpace(k) == key {
			v = strings.TrimSpace(v)
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			return v
		}
	}
	return ""
}
