package awsapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

const opOpenTunnel = "OpenTunnel"

// RequestTagKey is the tag OpenTunnel puts on every tunnel it opens, with a value
// unique to the call, so that after an ambiguous failure it can find out whether
// the service created the tunnel.
const RequestTagKey = "tunnelctl:request-id"

// Bounds of the lookup after an ambiguous OpenTunnel failure.
const (
	lookupPages      = 3               // ListTunnels pages of 100
	lookupCandidates = 20              // DescribeTunnel calls
	lookupSkew       = 5 * time.Minute // creation time tolerance (clock skew)
	maxTags          = 50              // the service's limit per tunnel
)

// ErrOpenUnknown means OpenTunnel failed ambiguously and the lookup could not tell
// whether a tunnel was created: the caller must not simply try again.
var ErrOpenUnknown = errors.New("the service may have opened the tunnel")

// OpenTunnel creates a tunnel and returns its two access tokens. With a
// DestinationConfig.ThingName the service notifies the device over MQTT.
//
// It is never resent blindly. Every call carries the tag RequestTagKey with a
// value of its own; after an ambiguous failure (HTTP 5xx, a lost response)
// OpenTunnel looks the tag up. Found: the tunnel was created, and fresh tokens
// for it come from RotateTunnelAccessToken (mode ALL, with the destination
// config, so the device is notified again). Not found: the call is sent again,
// up to MaxAttempts in all. The lookup failing: an error wrapping
// ErrOpenUnknown that says how to check.
func (c *Client) OpenTunnel(ctx context.Context, in *OpenTunnelInput) (*OpenTunnelOutput, error) {
	req := *in
	tag := ""
	if len(in.Tags) < maxTags {
		tag = newRequestTag()
		req.Tags = append(slices.Clone(in.Tags), Tag{Key: RequestTagKey, Value: tag})
	}
	started := c.cfg.Now()
	for attempt := 1; ; attempt++ {
		out := new(OpenTunnelOutput)
		err := c.call(ctx, opOpenTunnel, &req, out)
		if err == nil {
			return out, nil
		}
		if !ambiguous(err) || ctx.Err() != nil {
			return nil, err
		}
		if tag == "" {
			return nil, fmt.Errorf("%w: %w; %s", ErrOpenUnknown, err, checkHint(in))
		}
		found, lerr := c.findByTag(ctx, in, tag, started)
		switch {
		case lerr != nil:
			return nil, fmt.Errorf("%w: %w; checking for it failed (%w); %s", ErrOpenUnknown, err, lerr, checkHint(in))
		case found != nil:
			c.log.Debug("OpenTunnel failed but created the tunnel: taking new tokens for it", logTunnel, found.TunnelID)
			return c.adopt(ctx, found)
		case attempt >= c.cfg.MaxAttempts:
			return nil, fmt.Errorf("%w (no tunnel was opened)", err)
		}
		c.log.Debug("OpenTunnel failed and created no tunnel: trying again", logAttempt, attempt, logErr, err)
		if c.cfg.Sleep(ctx, backoff(attempt)) != nil {
			return nil, err
		}
	}
}

// checkHint tells the user how to find a tunnel the service may have opened.
func checkHint(in *OpenTunnelInput) string {
	if dc := in.DestinationConfig; dc != nil && dc.ThingName != "" {
		return "check with `tunnelctl list --thing " + dc.ThingName + "` and close any tunnel you did not want before trying again"
	}
	return "check with `tunnelctl list` and close any tunnel you did not want before trying again"
}

// findByTag returns the open tunnel that carries the request tag, nil when none does.
func (c *Client) findByTag(ctx context.Context, in *OpenTunnelInput, tag string, started time.Time) (*Tunnel, error) {
	thing := ""
	if in.DestinationConfig != nil {
		thing = in.DestinationConfig.ThingName
	}
	list, err := c.ListAllTunnels(ctx, thing, lookupPages*100)
	if err != nil {
		return nil, err
	}
	checked := 0
	for _, s := range list {
		if s.Status != StatusOpen || (!s.CreatedAt.IsZero() && s.CreatedAt.Before(started.Add(-lookupSkew))) {
			continue
		}
		if checked++; checked > lookupCandidates {
			return nil, fmt.Errorf("more than %d tunnels opened since the call", lookupCandidates)
		}
		d, err := c.DescribeTunnel(ctx, &DescribeTunnelInput{TunnelID: s.TunnelID})
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if slices.Contains(d.Tunnel.Tags, Tag{Key: RequestTagKey, Value: tag}) {
			return &d.Tunnel, nil
		}
	}
	return nil, nil
}

// adopt takes new tokens for a tunnel that the failed call created.
func (c *Client) adopt(ctx context.Context, t *Tunnel) (*OpenTunnelOutput, error) {
	rot, err := c.RotateTunnelAccessToken(ctx, &RotateTunnelAccessTokenInput{
		TunnelID: t.TunnelID, ClientMode: ClientModeAll, DestinationConfig: t.DestinationConfig,
	})
	if err != nil {
		return nil, fmt.Errorf("tunnel %s was opened but taking its tokens failed: %w; close it with `tunnelctl close %s`", t.TunnelID, err, t.TunnelID)
	}
	return &OpenTunnelOutput{TunnelID: t.TunnelID, TunnelARN: rot.TunnelARN,
		SourceAccessToken: rot.SourceAccessToken, DestinationAccessToken: rot.DestinationAccessToken}, nil
}

func newRequestTag() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
