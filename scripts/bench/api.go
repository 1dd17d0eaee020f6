package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// apiClient calls the emulator's awsJson1.1 control plane with plain JSON
// POSTs, SigV4-signed with a bench key (the emulator checks the header's
// form, scope and date).
type apiClient struct {
	url  string
	http *http.Client
}

func newAPIClient(url string) *apiClient {
	return &apiClient{url: url, http: &http.Client{Timeout: 10 * time.Second}}
}

func (a *apiClient) call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "IoTSecuredTunneling."+op)
	if err := emulator.SignRequest(req, body, "AKIDBENCH", "bench-secret", emulator.DefaultRegion, time.Now()); err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: read response: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", op, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: decode response: %w", op, err)
	}
	return nil
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
