// Command tunnel-emulator runs a local stand-in for AWS IoT Secure Tunneling
// (API, data-plane relay, MQTT notify broker) on loopback, and issues device
// certificates for its broker (`tunnel-emulator certs --thing NAME`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println("tunnel-emulator", version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "tunnel-emulator:", err)
		os.Exit(1)
	}
}

// run starts the emulator (or a subcommand) and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "certs" {
		return runCerts(args[1:], stdout, stderr)
	}
	cfg, verbose, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	e, err := emulator.New(cfg)
	if err != nil {
		return err
	}
	printEndpoints(stdout, e, cfg)
	return e.Run(ctx)
}

func parseFlags(args []string, stderr io.Writer) (emulator.Config, bool, error) {
	var cfg emulator.Config
	var verbose bool
	var credFile string
	fs := flag.NewFlagSet("tunnel-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage:
  tunnel-emulator [flags]                 run AWS IoT Secure Tunneling (API, data plane, MQTT) on loopback
  tunnel-emulator certs --thing NAME [--out DIR] [--state-dir DIR]
                                          issue a device certificate for the broker's mutual TLS

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.APIAddr, "api-addr", "127.0.0.1:8440", "control-plane API listen address")
	fs.StringVar(&cfg.DataAddr, "data-addr", "127.0.0.1:8443", "data-plane WebSocket listen address")
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", "127.0.0.1:8883", "embedded MQTT broker listen address (mutual TLS)")
	fs.StringVar(&cfg.MQTTPlainAddr, "mqtt-plain-addr", "", "also listen for plain MQTT on this address (debugging; off by default)")
	fs.StringVar(&cfg.MQTTURL, "mqtt-url", "", "publish notifications to this external broker (tcp://host:port or ssl://host:port) instead of the embedded one")
	fs.StringVar(&cfg.NotifyTopicFormat, "notify-topic", emulator.DefaultNotifyTopicFormat, "notify topic, %s is the thing name")
	fs.StringVar(&cfg.Region, "region", emulator.DefaultRegion, "region in ARNs and notifications")
	fs.StringVar(&cfg.AccountID, "account-id", emulator.DefaultAccountID, "account id in ARNs")
	fs.IntVar(&cfg.MaxOpenTunnels, "max-open-tunnels", emulator.DefaultMaxOpenTunnels, "open tunnels before OpenTunnel fails with LimitExceededException")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "directory for the CA, certificates and tunnels (tunnels.json: a restarted emulator continues them) (default $XDG_STATE_HOME/tunnel-emulator or ~/.local/state/tunnel-emulator)")
	fs.DurationVar(&cfg.Retention, "retention", emulator.DefaultRetention, "how long closed tunnels stay listable")
	fs.BoolVar(&cfg.Strict, "strict", false, "close client connections that break the protocol rules")
	fs.BoolVar(&cfg.RotateDisconnects, "rotate-disconnects", false, "RotateTunnelAccessToken also closes the connections of the rotated modes (default: they stay up)")
	fs.Int64Var(&cfg.Bandwidth, "bandwidth", 0, "bytes per second per tunnel, both directions together (AWS: about 800000); 0 unlimited")
	fs.DurationVar(&cfg.APIReadTimeout, "api-read-timeout", emulator.DefaultAPIReadTimeout, "time allowed to receive one API request, headers and body")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "drop data-plane connections idle this long (AWS: about 60s); 0 never")
	fs.BoolVar(&cfg.APITLS, "api-tls", false, "serve the API over HTTPS with the emulator's certificate")
	fs.BoolVar(&cfg.DataPlaintext, "data-plaintext", false, "serve the data plane as ws:// instead of wss:// (debugging)")
	fs.BoolVar(&cfg.BrokerAllowAll, "broker-allow-all", false, "let every device connect with any client id and subscribe to any topic "+
		"(default: AWS IoT Core's per-thing policy: client id = certificate CN, only its own notify topic)")
	fs.Func("mqtt-client-id", "THING=ID: also allow THING's certificate to connect with client id ID (repeatable)", func(v string) error {
		thing, id, ok := strings.Cut(v, "=")
		if !ok || thing == "" || id == "" {
			return fmt.Errorf("want THING=CLIENT_ID, got %q", v)
		}
		if cfg.ClientIDs == nil {
			cfg.ClientIDs = map[string][]string{}
		}
		cfg.ClientIDs[thing] = append(cfg.ClientIDs[thing], id)
		return nil
	})
	fs.Func("mqtt-publish-topic", "FORMAT: also let each thing publish to this topic, %s standing for the thing "+
		"(repeatable; tunnel-agent's audit_topic needs tunnel-agent/%s/events)", func(v string) error {
		if strings.Count(v, "%s") != 1 || strings.ContainsAny(v, "+#") {
			return fmt.Errorf("want a topic with one %%s for the thing and no wildcards, got %q", v)
		}
		cfg.PublishTopicFormats = append(cfg.PublishTopicFormats, v)
		return nil
	})
	fs.BoolVar(&cfg.NoAuth, "no-auth", false, "accept API requests without checking their SigV4 signature")
	fs.StringVar(&credFile, "credentials", "", "verify SigV4 signatures with the access keys in this file (AWS shared credentials format: aws_access_key_id, aws_secret_access_key); "+
		"without it the Authorization header's form, scope and date are checked, not the signature")
	fs.BoolVar(&verbose, "v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("unexpected argument %q (subcommand: certs)", fs.Arg(0))
	}
	if credFile != "" {
		if cfg.NoAuth {
			return cfg, false, errors.New("--credentials and --no-auth exclude each other: choose one")
		}
		creds, err := emulator.LoadCredentials(credFile)
		if err != nil {
			return cfg, false, err
		}
		cfg.Credentials = creds
	}
	return cfg, verbose, nil
}

func printEndpoints(w io.Writer, e *emulator.Emulator, cfg emulator.Config) {
	scheme := "wss"
	if cfg.DataPlaintext {
		scheme = "ws"
	}
	fmt.Fprintf(w, "API endpoint:   %s\n", e.APIURL())
	fmt.Fprintf(w, "Data endpoint:  %s (%s://%s/tunnel)\n", e.DataEndpoint(), scheme, e.DataEndpoint())
	if e.MQTTAddr() != "" {
		fmt.Fprintf(w, "MQTT broker:    %s (mutual TLS; device certs: tunnel-emulator certs --thing NAME)\n", e.MQTTAddr())
	} else {
		fmt.Fprintf(w, "MQTT broker:    %s (external)\n", cfg.MQTTURL)
	}
	if e.MQTTPlainAddr() != "" {
		fmt.Fprintf(w, "MQTT plain:     %s\n", e.MQTTPlainAddr())
	}
	fmt.Fprintf(w, "CA certificate: %s\n", e.CAFile())
	switch {
	case cfg.NoAuth:
		fmt.Fprintln(w, "API auth:       none (--no-auth)")
	case cfg.Credentials != nil:
		fmt.Fprintf(w, "API auth:       SigV4 signatures verified (access keys: %d)\n", len(cfg.Credentials))
	default:
		fmt.Fprintf(w, "API auth:       SigV4 header checked (service %s, region %s, clock skew 5 min), signature not verified; --credentials FILE verifies it\n",
			emulator.SigningName, cfg.Region)
	}
}

func runCerts(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tunnel-emulator certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	thing := fs.String("thing", "", "thing name (certificate CommonName); required")
	out := fs.String("out", ".", "directory for <thing>.cert.pem, <thing>.private.key and ca.pem")
	stateDir := fs.String("state-dir", "", "emulator state directory holding the CA (default as for the emulator)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *thing == "" {
		return errors.New("certs: --thing is required")
	}
	dir := *stateDir
	if dir == "" {
		d, err := emulator.DefaultStateDir()
		if err != nil {
			return err
		}
		dir = d
	}
	ca, err := emulator.LoadOrCreateCA(dir)
	if err != nil {
		return err
	}
	certFile, keyFile, err := ca.IssueDeviceCert(*thing, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "certificate: %s\nprivate key: %s\nCA:          %s\n", certFile, keyFile, filepath.Join(*out, "ca.pem"))
	return nil
}
