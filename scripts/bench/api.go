package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// apiClient calls the emulator's awsJson1.1 control plane with plain JSON
// POSTs, SigV4-signed with test keys (emulator.CallAPI).
type apiClient struct {
	url  string
	http *http.Client
}

func newAPIClient(url string) *apiClient {
	return &apiClient{url: url, http: &http.Client{Timeout: 10 * time.Second}}
}

func (a *apiClient) call(ctx context.Context, op string, in, out any) error {
	return emulator.CallAPI(ctx, a.http, a.url, emulator.DefaultRegion, op, in, out)
}

// openedTunnel is the OpenTunnel response (tokens are secrets: never print).
type openedTunnel struct {
	TunnelID               string `json:"tunnelId"`
	SourceAccessToken      string `json:"sourceAccessToken"`
	DestinationAccessToken string `json:"destinationAccessToken"`
}

func (a *apiClient) openTunnel(ctx context.Context, thing string, services []string) (openedTunnel, error) {
	var out openedTunnel
	in := map[string]any{
		"description":       "bench",
		"destinationConfig": map[string]any{"thingName": thing, "services": services},
		"timeoutConfig":     map[string]any{"maxLifetimeTimeoutMinutes": 30},
	}
	err := a.call(ctx, "OpenTunnel", in, &out)
	return out, err
}

func (a *apiClient) closeTunnel(ctx context.Context, id string) error {
	return a.call(ctx, "CloseTunnel", map[string]any{"tunnelId": id, "delete": true}, nil)
}

// connStates returns the source and destination connection status.
func (a *apiClient) connStates(ctx context.Context, id string) (src, dst string, err error) {
	var out struct {
		Tunnel struct {
			Source struct {
				Status string `json:"status"`
			} `json:"sourceConnectionState"`
			Destination struct {
				Status string `json:"status"`
			} `json:"destinationConnectionState"`
		} `json:"tunnel"`
	}
	err = a.call(ctx, "DescribeTunnel", map[string]any{"tunnelId": id}, &out)
	return out.Tunnel.Source.Status, out.Tunnel.Destination.Status, err
}

// waitConnected polls DescribeTunnel until the source (src) or destination
// side reports CONNECTED.
func (a *apiClient) waitConnected(ctx context.Context, id string, src bool) error {
	for {
		s, d, err := a.connStates(ctx, id)
		if err != nil {
			return err
		}
		if (src && s == "CONNECTED") || (!src && d == "CONNECTED") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tunnel %s: waiting for the %s to connect: %w", id, map[bool]string{true: "source", false: "destination"}[src], context.Cause(ctx))
		case <-time.After(5 * time.Millisecond):
		}
	}
}
