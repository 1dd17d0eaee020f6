package awsapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go/logging"
)

// LoadOptions selects where Load takes region and credentials from.
type LoadOptions struct {
	Profile    string // shared config profile; "" means AWS_PROFILE or "default"
	Region     string // overrides AWS_REGION / the profile's region
	Endpoint   string // URL override (emulator, VPC endpoint)
	HTTPClient *http.Client
	UserAgent  string
}

// Load builds a Client with the standard AWS resolution of region and credentials
// (environment, shared config and credentials files, profiles, SSO, IMDS) through
// config.LoadDefaultConfig. For a loopback endpoint (the local emulator, which does not
// verify signatures) IMDS is skipped and, when no credentials are configured,
// placeholder credentials sign the requests.
func Load(ctx context.Context, o LoadOptions) (*Client, error) {
	// The SDK's own warnings (e.g. the IMDSv1 fallback) would break the one-line errors.
	opts := []func(*config.LoadOptions) error{config.WithLogger(logging.Nop{})}
	if o.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(o.Profile))
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	loopback := isLoopbackURL(o.Endpoint)
	if loopback {
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration (profile %q): %w", o.Profile, err)
	}
	creds := awsCfg.Credentials
	if loopback {
		creds = withFallback(creds, credentials.NewStaticCredentialsProvider("EMULATOR", "emulator-secret", ""))
	}
	return New(Config{
		Region:      awsCfg.Region,
		Endpoint:    o.Endpoint,
		Credentials: creds,
		HTTPClient:  o.HTTPClient,
		UserAgent:   o.UserAgent,
	})
}

// withFallback returns a provider that uses primary and falls back when it yields nothing.
func withFallback(primary, fallback aws.CredentialsProvider) aws.CredentialsProvider {
	if primary == nil {
		return fallback
	}
	return aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
		c, err := primary.Retrieve(ctx)
		if err == nil && c.HasKeys() {
			return c, nil
		}
		return fallback.Retrieve(ctx)
	})
}

func isLoopbackURL(s string) bool {
	if s == "" {
		return false
	}
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
