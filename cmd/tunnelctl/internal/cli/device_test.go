package cli

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// startAgent runs a real tunnel agent for thing against the emulator's broker
// (mutual TLS with an emulator-issued certificate) and waits until it subscribed.
func startAgent(t *testing.T, e *emulator.Emulator, thing string, services map[string]string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, err := e.IssueDeviceCert(thing, filepath.Join(dir, "device"))
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(e.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := config.Default()
	cfg.ThingName, cfg.Endpoint, cfg.Port = thing, host, p
	cfg.Cert, cfg.Key, cfg.RootCA = certFile, keyFile, e.CAFile()
	cfg.Services, cfg.DataEndpoint, cfg.CAFile = services, e.DataEndpoint(), e.CAFile()
	cfg.StateDir = filepath.Join(dir, "state")
	src, err := notify.NewMQTTSource(notify.MQTTConfig{Endpoint: host, Port: p, ThingName: thing,
		CertFile: certFile, KeyFile: keyFile, RootCAFile: e.CAFile(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := agent.New(cfg, src, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		waitStopped(t, "agent", done)
	})
	select {
	case <-ag.Ready():
	case err := <-done:
		t.Fatalf("agent ended before subscribing: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not subscribe within 20s")
	}
}

// testAPI is an API client for the emulator.
func testAPI(t *testing.T, e *emulator.Emulator) *awsapi.Client {
	t.Helper()
	c, err := awsapi.New(awsapi.Config{Endpoint: e.APIURL(),
		Credentials: credentials.NewStaticCredentialsProvider("TEST", "test", "")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitDestination waits until the device side of a tunnel is connected.
func waitDestination(t *testing.T, c *awsapi.Client, id string) {
	t.Helper()
	waitFor(t, "the agent to connect the tunnel", 20*time.Second, func() bool {
		d, err := c.DescribeTunnel(context.Background(), &awsapi.DescribeTunnelInput{TunnelID: id})
		return err == nil && d.Tunnel.DestinationConnectionState != nil &&
			d.Tunnel.DestinationConnectionState.Status == awsapi.StatusConnected
	})
}
