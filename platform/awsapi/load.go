package awsapi

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go/logging"
)

// LoadOptions selects where Load takes region, endpoint and credentials from.
type LoadOptions struct {
	Profile    string // shared config profile; "" means AWS_PROFILE or "default"
	Region     string // overrides AWS_REGION / the profile's region
	Endpoint   string // URL override (--endpoint): beats every configured endpoint
	HTTPClient *http.Client
	UserAgent  string
	Logger     *slog.Logger // request log at Debug (--verbose); nil discards
}

// Load builds a Client the way the AWS CLI and SDKs resolve their settings:
// region and credentials through config.LoadDefaultConfig (environment, shared
// config and credentials files, profiles, SSO, IMDS); the API endpoint by the
// precedence of PickEndpoint; the CA bundle from AWS_CA_BUNDLE or the profile's
// ca_bundle. For a loopback endpoint (the local emulator) IMDS is skipped and,
// when no credentials are configured, placeholder credentials sign the requests.
func Load(ctx context.Context, o LoadOptions) (*Client, error) {
	awsCfg, err := loadSDK(ctx, o, false)
	if err != nil {
		return nil, err
	}
	env, shared := sdkSources(awsCfg.ConfigSources)
	endpoint, source := PickEndpoint(endpointInputs(ctx, o.Endpoint, env, shared))
	if endpoint != "" {
		if _, err := ValidateEndpoint(endpoint); err != nil {
			return nil, fmt.Errorf("%w (from %s)", err, source)
		}
	}
	loopback := isLoopbackURL(endpoint)
	if loopback {
		if awsCfg, err = loadSDK(ctx, o, true); err != nil {
			return nil, err
		}
	}
	creds := awsCfg.Credentials
	if loopback {
		creds = withFallback(creds, credentials.NewStaticCredentialsProvider("EMULATOR", "emulator-secret", ""))
	}
	set := Settings{Endpoint: endpoint, EndpointSource: source, Region: awsCfg.Region}
	set.CABundle, set.CABundleSource = caBundle(env, shared)
	var roots *x509.CertPool
	if set.CABundle != "" {
		if roots, err = LoadCABundle(set.CABundle, set.CABundleSource); err != nil {
			return nil, err
		}
	}
	profile := shared.Profile
	if profile == "" {
		profile = "default"
	}
	set.DataEndpoint = profileKey(profile, ProfileDataEndpoint)
	c, err := New(Config{
		Region:      awsCfg.Region,
		Endpoint:    endpoint,
		Credentials: creds,
		HTTPClient:  o.HTTPClient,
		RootCAs:     roots,
		UserAgent:   o.UserAgent,
		Logger:      o.Logger,
	})
	if err != nil {
		return nil, err
	}
	set.Endpoint, set.Region = c.Endpoint(), c.Region()
	c.settings = set
	if set.EndpointSource != "" {
		c.log.Debug("API endpoint", logEndpoint, set.Endpoint, logSource, set.EndpointSource)
	}
	if set.CABundle != "" {
		c.log.Debug("CA bundle", logFile, set.CABundle, logSource, set.CABundleSource)
	}
	return c, nil
}

// loadSDK runs config.LoadDefaultConfig with the options' profile and region.
func loadSDK(ctx context.Context, o LoadOptions, noIMDS bool) (aws.Config, error) {
	// The SDK's own warnings (e.g. the IMDSv1 fallback) would break the one-line errors.
	opts := []func(*config.LoadOptions) error{config.WithLogger(logging.Nop{})}
	if o.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(o.Profile))
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	if noIMDS {
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		if f := os.Getenv(EnvCABundle); f != "" {
			if _, cerr := LoadCABundle(f, EnvCABundle); cerr != nil {
				return aws.Config{}, cerr // says which file and setting, unlike the SDK
			}
		}
		return aws.Config{}, fmt.Errorf("loading AWS configuration (profile %q): %w", o.Profile, err)
	}
	return awsCfg, nil
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
	return isLoopbackHost(u.Hostname())
}
