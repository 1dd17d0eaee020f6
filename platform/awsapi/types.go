package awsapi

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// ClientMode selects which access token(s) RotateTunnelAccessToken replaces.
type ClientMode string

// Client modes of RotateTunnelAccessToken.
const (
	ClientModeSource      ClientMode = "SOURCE"
	ClientModeDestination ClientMode = "DESTINATION"
	ClientModeAll         ClientMode = "ALL"
)

// Tunnel and connection states as the service reports them.
const (
	StatusOpen         = "OPEN"
	StatusClosed       = "CLOSED"
	StatusConnected    = "CONNECTED"
	StatusDisconnected = "DISCONNECTED"
)

// Tag is one resource tag.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// DestinationConfig names the device (thing) and the services of a tunnel.
type DestinationConfig struct {
	ThingName string   `json:"thingName,omitempty"`
	Services  []string `json:"services"`
}

// TimeoutConfig bounds a tunnel's lifetime (1–720 minutes; 720 when absent).
type TimeoutConfig struct {
	MaxLifetimeTimeoutMinutes int `json:"maxLifetimeTimeoutMinutes,omitempty"`
}

// ConnectionState is the state of one side (source or destination) of a tunnel.
type ConnectionState struct {
	Status        string    `json:"status,omitempty"`
	LastUpdatedAt EpochTime `json:"lastUpdatedAt,omitzero"`
}

// Tunnel is the full description of a tunnel (DescribeTunnel).
type Tunnel struct {
	TunnelID                   string             `json:"tunnelId"`
	TunnelARN                  string             `json:"tunnelArn"`
	Status                     string             `json:"status"`
	SourceConnectionState      *ConnectionState   `json:"sourceConnectionState,omitempty"`
	DestinationConnectionState *ConnectionState   `json:"destinationConnectionState,omitempty"`
	Description                string             `json:"description,omitempty"`
	DestinationConfig          *DestinationConfig `json:"destinationConfig,omitempty"`
	TimeoutConfig              *TimeoutConfig     `json:"timeoutConfig,omitempty"`
	Tags                       []Tag              `json:"tags,omitempty"`
	CreatedAt                  EpochTime          `json:"createdAt,omitzero"`
	LastUpdatedAt              EpochTime          `json:"lastUpdatedAt,omitzero"`
}

// TunnelSummary is one entry of ListTunnels.
type TunnelSummary struct {
	TunnelID      string    `json:"tunnelId"`
	TunnelARN     string    `json:"tunnelArn"`
	Status        string    `json:"status"`
	Description   string    `json:"description,omitempty"`
	CreatedAt     EpochTime `json:"createdAt,omitzero"`
	LastUpdatedAt EpochTime `json:"lastUpdatedAt,omitzero"`
}

// OpenTunnelInput is the request of OpenTunnel.
type OpenTunnelInput struct {
	Description       string             `json:"description,omitempty"`
	Tags              []Tag              `json:"tags,omitempty"`
	DestinationConfig *DestinationConfig `json:"destinationConfig,omitempty"`
	TimeoutConfig     *TimeoutConfig     `json:"timeoutConfig,omitempty"`
}

// OpenTunnelOutput is the response of OpenTunnel. The tokens are secrets.
type OpenTunnelOutput struct {
	TunnelID               string `json:"tunnelId"`
	TunnelARN              string `json:"tunnelArn"`
	SourceAccessToken      string `json:"sourceAccessToken"`
	DestinationAccessToken string `json:"destinationAccessToken"`
}

// CloseTunnelInput is the request of CloseTunnel.
type CloseTunnelInput struct {
	TunnelID string `json:"tunnelId"`
	Delete   bool   `json:"delete,omitempty"`
}

// DescribeTunnelInput is the request of DescribeTunnel.
type DescribeTunnelInput struct {
	TunnelID string `json:"tunnelId"`
}

// DescribeTunnelOutput is the response of DescribeTunnel.
type DescribeTunnelOutput struct {
	Tunnel Tunnel `json:"tunnel"`
}

// ListTunnelsInput is the request of ListTunnels.
type ListTunnelsInput struct {
	ThingName  string `json:"thingName,omitempty"`
	MaxResults int    `json:"maxResults,omitempty"`
	NextToken  string `json:"nextToken,omitempty"`
}

// ListTunnelsOutput is the response of ListTunnels.
type ListTunnelsOutput struct {
	TunnelSummaries []TunnelSummary `json:"tunnelSummaries"`
	NextToken       string          `json:"nextToken,omitempty"`
}

// RotateTunnelAccessTokenInput is the request of RotateTunnelAccessToken.
type RotateTunnelAccessTokenInput struct {
	TunnelID          string             `json:"tunnelId"`
	ClientMode        ClientMode         `json:"clientMode"`
	DestinationConfig *DestinationConfig `json:"destinationConfig,omitempty"`
}

// RotateTunnelAccessTokenOutput carries only the rotated token(s). The tokens are secrets.
type RotateTunnelAccessTokenOutput struct {
	TunnelARN              string `json:"tunnelArn"`
	SourceAccessToken      string `json:"sourceAccessToken,omitempty"`
	DestinationAccessToken string `json:"destinationAccessToken,omitempty"`
}

// TagResourceInput is the request of TagResource.
type TagResourceInput struct {
	ResourceARN string `json:"resourceArn"`
	Tags        []Tag  `json:"tags"`
}

// UntagResourceInput is the request of UntagResource.
type UntagResourceInput struct {
	ResourceARN string   `json:"resourceArn"`
	TagKeys     []string `json:"tagKeys"`
}

// ListTagsForResourceInput is the request of ListTagsForResource.
type ListTagsForResourceInput struct {
	ResourceARN string `json:"resourceArn"`
}

// ListTagsForResourceOutput is the response of ListTagsForResource.
type ListTagsForResourceOutput struct {
	Tags []Tag `json:"tags"`
}

// EpochTime is an awsJson1.1 timestamp: a JSON number of seconds since the epoch.
type EpochTime struct{ time.Time }

// MarshalJSON writes seconds since the epoch (with milliseconds when present).
func (t EpochTime) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	secs := float64(t.UnixMilli()) / 1000
	return strconv.AppendFloat(nil, secs, 'f', -1, 64), nil
}

// UnmarshalJSON reads a JSON number of seconds (fractions allowed) or null.
func (t *EpochTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("timestamp %s is not epoch seconds: %w", b, err)
	}
	if math.IsNaN(secs) || math.IsInf(secs, 0) || math.Abs(secs) > 1e11 {
		return fmt.Errorf("timestamp %s is out of range", b)
	}
	whole, frac := math.Modf(secs)
	t.Time = time.Unix(int64(whole), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC()
	return nil
}
