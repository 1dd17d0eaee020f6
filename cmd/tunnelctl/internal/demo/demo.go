// Package demo runs the whole tunnelling chain on one machine: the emulator with its
// embedded broker, a tunnel agent subscribed to it with a certificate from the
// emulator's CA, a tunnel with an SSH and an HTTP service, and the source proxy.
// With Check it pushes data through every service, verifies it and reports.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// Defaults of the demo.
const (
	Thing           = "demo-device"
	DefaultSSHPort  = 2222
	DefaultHTTPPort = 8080
	localSSHD       = "127.0.0.1:22"
	startTimeout    = 20 * time.Second
	checkTimeout    = 60 * time.Second
	// attrComponent names which part of the demo a log line comes from.
	attrComponent = "component"
)

// Config configures Run.
type Config struct {
	// Check runs the data checks and returns instead of waiting for ctx.
	Check bool
	// SSHPort and HTTPPort are the source proxy's local ports; 0 picks free ports,
	// and a busy port falls back to a free one.
	SSHPort, HTTPPort int
	// SSHTarget is the device-side sshd used when not checking (default 127.0.0.1:22).
	SSHTarget string
	// Out receives the instructions and check results.
	Out io.Writer
	// Logger receives the components' logs; nil discards them.
	Logger *slog.Logger
	// OnReady, when set, is called with the proxy's addresses once the chain is up (tests).
	OnReady func(addrs map[string]string)
}

// The demo signs its API calls with this key (not a secret: loopback only).
const (
	demoAccessKey = "DEMO"
	demoSecretKey = "demo-secret"
)

// Run starts everything, prints how to connect and serves until ctx is cancelled
// (or, with Check, until the checks are done). Everything it started is stopped
// and its temporary directory removed before it returns.
func Run(ctx context.Context, cfg Config) (err error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.SSHTarget == "" {
		cfg.SSHTarget = localSSHD
	}
	tmp, err := os.MkdirTemp("", "tunnelctl-demo-*")
	if err != nil {
		return fmt.Errorf("creating the demo's temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	svcs, err := startServices()
	if err != nil {
		return err
	}
	defer svcs.Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &demo{cfg: cfg, tmp: tmp, svcs: svcs, stack: newStack(ctx, cancel)}
	err = d.run(runCtx)
	if serr := d.stack.stop(); serr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = serr
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil // Ctrl-C: a clean stop
	}
	return err
}

// demo is one run's state.
type demo struct {
	cfg   Config
	tmp   string
	svcs  *localServices
	stack *stack
	emu   *emulator.Emulator
	api   *awsapi.Client

	services    map[string]string // service -> device-side address
	sshLabel    string
	echoService string // the service backed by the echo, checked with bulk data
}

func (d *demo) run(ctx context.Context) error {
	if err := d.startEmulator(); err != nil {
		return err
	}
	if err := d.startAgent(ctx); err != nil {
		return err
	}
	open, err := d.api.OpenTunnel(ctx, &awsapi.OpenTunnelInput{
		Description:       "tunnelctl demo",
		DestinationConfig: &awsapi.DestinationConfig{ThingName: Thing, Services: []string{"SSH", "HTTP"}},
		TimeoutConfig:     &awsapi.TimeoutConfig{MaxLifetimeTimeoutMinutes: 720},
	})
	if err != nil {
		return fmt.Errorf("opening the demo tunnel: %w", err)
	}
	addrs, err := d.startProxy(open)
	if err != nil {
		return err
	}
	if err := d.waitConnected(ctx, open.TunnelID); err != nil {
		return err
	}
	d.printReady(open.TunnelID, addrs)
	if d.cfg.OnReady != nil {
		d.cfg.OnReady(addrs)
	}
	if d.cfg.Check {
		ctx, cancel := context.WithTimeout(ctx, checkTimeout)
		defer cancel()
		return runChecks(ctx, d.cfg.Out, addrs, d.echoService)
	}
	<-ctx.Done()
	fmt.Fprintln(d.cfg.Out, "Stopping the demo...")
	return nil
}

func (d *demo) startEmulator() error {
	emu, err := emulator.New(emulator.Config{
		StateDir: filepath.Join(d.tmp, "emulator"), Logger: d.cfg.Logger.With(attrComponent, "emulator"),
		// The emulator checks each API call's SigV4 header (service, region,
		// date) but not the signature, so the printed hint
		// `tunnelctl --endpoint ... describe` works with the user's own keys.
	})
	if err != nil {
		return fmt.Errorf("starting the emulator: %w", err)
	}
	d.emu = emu
	d.stack.start("emulator", emu.Run)
	d.api, err = awsapi.New(awsapi.Config{
		Endpoint:    emu.APIURL(),
		Credentials: credentials.NewStaticCredentialsProvider(demoAccessKey, demoSecretKey, ""),
	})
	if err != nil {
		return err
	}
	d.stack.onStop(d.api.Close)
	return nil
}

// startAgent runs a tunnel agent for Thing with a certificate from the emulator's CA
// and waits until it is subscribed to its notify topic.
func (d *demo) startAgent(ctx context.Context) error {
	certFile, keyFile, err := d.emu.IssueDeviceCert(Thing, filepath.Join(d.tmp, "device"))
	if err != nil {
		return fmt.Errorf("issuing the demo device certificate: %w", err)
	}
	d.chooseServices()
	cfg := config.Default()
	cfg.ThingName, cfg.Cert, cfg.Key, cfg.RootCA = Thing, certFile, keyFile, d.emu.CAFile()
	cfg.Services = d.services
	cfg.DataEndpoint, cfg.CAFile = d.emu.DataEndpoint(), d.emu.CAFile()
	cfg.StateDir = filepath.Join(d.tmp, "agent")
	host, port, err := splitHostPort(d.emu.MQTTAddr())
	if err != nil {
		return err
	}
	cfg.Endpoint, cfg.Port = host, port
	log := d.cfg.Logger.With(attrComponent, "agent")
	src, err := notify.NewMQTTSource(notify.MQTTConfig{
		Endpoint: host, Port: port, ThingName: Thing, CertFile: certFile, KeyFile: keyFile,
		RootCAFile: d.emu.CAFile(), Logger: log,
	})
	if err != nil {
		return fmt.Errorf("demo agent: %w", err)
	}
	ag, err := agent.New(cfg, src, log)
	if err != nil {
		return fmt.Errorf("demo agent: %w", err)
	}
	d.stack.start("agent", ag.Run)
	select {
	case <-ag.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(startTimeout):
		return fmt.Errorf("the demo agent did not subscribe to the emulator's broker within %s (run with --verbose)", startTimeout)
	}
}

// chooseServices maps SSH to the local sshd when one listens (and no check runs),
// else to the built-in echo; HTTP to the built-in page.
func (d *demo) chooseServices() {
	d.services = map[string]string{"HTTP": d.svcs.HTTPAddr()}
	if !d.cfg.Check && sshListening(d.cfg.SSHTarget) {
		d.services["SSH"] = d.cfg.SSHTarget
		d.sshLabel = "the local sshd on " + d.cfg.SSHTarget
		return
	}
	d.services["SSH"] = d.svcs.EchoAddr()
	d.sshLabel = "a built-in echo service (no sshd on " + d.cfg.SSHTarget + ")"
	if d.cfg.Check {
		d.sshLabel = "a built-in echo service (--check always uses the echo)"
	}
	d.echoService = "SSH"
}
