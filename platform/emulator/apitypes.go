package emulator

import (
	"encoding/json"
	"time"
)

// Request shapes. Pointers tell an absent member from a zero value, because
// the model's bounds apply only to members that are present.

type tagJSON struct {
	Key   *string `json:"key"`
	Value *string `json:"value"`
}

type destinationConfigJSON struct {
	ThingName *string   `json:"thingName"`
	Services  *[]string `json:"services"`
}

type openTunnelRequest struct {
	Description       *string                `json:"description"`
	DestinationConfig *destinationConfigJSON `json:"destinationConfig"`
	Tags              *[]tagJSON             `json:"tags"`
	TimeoutConfig     *struct {
		MaxLifetimeTimeoutMinutes *int64 `json:"maxLifetimeTimeoutMinutes"`
	} `json:"timeoutConfig"`
}

type closeRequest struct {
	TunnelID *string `json:"tunnelId"`
	Delete   *bool   `json:"delete"`
}

type describeRequest struct {
	TunnelID *string `json:"tunnelId"`
}

type listRequest struct {
	ThingName  *string `json:"thingName"`
	MaxResults *int64  `json:"maxResults"`
	NextToken  *string `json:"nextToken"`
}

type rotateRequest struct {
	TunnelID          *string                `json:"tunnelId"`
	ClientMode        *string                `json:"clientMode"`
	DestinationConfig *destinationConfigJSON `json:"destinationConfig"`
}

type tagRequest struct {
	ResourceArn *string    `json:"resourceArn"`
	Tags        *[]tagJSON `json:"tags"`
}

type untagRequest struct {
	ResourceArn *string   `json:"resourceArn"`
	TagKeys     *[]string `json:"tagKeys"`
}

type arnRequest struct {
	ResourceArn *string `json:"resourceArn"`
}

// Response shapes.

// Tag is one tunnel tag.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// epochSeconds marshals a time as an awsJson1.1 timestamp: a JSON number of
// seconds since the epoch, with millisecond precision.
type epochSeconds time.Time

func (t epochSeconds) MarshalJSON() ([]byte, error) {
	return json.Marshal(float64(time.Time(t).UnixMilli()) / 1000)
}

type destinationConfigOut struct {
	ThingName string   `json:"thingName,omitempty"`
	Services  []string `json:"services"`
}

type connectionStateOut struct {
	Status        string       `json:"status"`
	LastUpdatedAt epochSeconds `json:"lastUpdatedAt"`
}

type tunnelOut struct {
	TunnelID                   string                `json:"tunnelId"`
	TunnelArn                  string                `json:"tunnelArn"`
	Status                     string                `json:"status"`
	SourceConnectionState      connectionStateOut    `json:"sourceConnectionState"`
	DestinationConnectionState connectionStateOut    `json:"destinationConnectionState"`
	Description                string                `json:"description,omitempty"`
	DestinationConfig          *destinationConfigOut `json:"destinationConfig,omitempty"`
	TimeoutConfig              struct {
		MaxLifetimeTimeoutMinutes int64 `json:"maxLifetimeTimeoutMinutes"`
	} `json:"timeoutConfig"`
	Tags          []Tag        `json:"tags,omitempty"`
	CreatedAt     epochSeconds `json:"createdAt"`
	LastUpdatedAt epochSeconds `json:"lastUpdatedAt"`
}

type tunnelSummaryOut struct {
	TunnelID      string       `json:"tunnelId"`
	TunnelArn     string       `json:"tunnelArn"`
	Status        string       `json:"status"`
	Description   string       `json:"description,omitempty"`
	CreatedAt     epochSeconds `json:"createdAt"`
	LastUpdatedAt epochSeconds `json:"lastUpdatedAt"`
}

type openTunnelResponse struct {
	TunnelID               string `json:"tunnelId"`
	TunnelArn              string `json:"tunnelArn"`
	SourceAccessToken      string `json:"sourceAccessToken"`
	DestinationAccessToken string `json:"destinationAccessToken"`
}

type rotateResponse struct {
	TunnelArn              string `json:"tunnelArn"`
	SourceAccessToken      string `json:"sourceAccessToken,omitempty"`
	DestinationAccessToken string `json:"destinationAccessToken,omitempty"`
}

type listResponse struct {
	TunnelSummaries []tunnelSummaryOut `json:"tunnelSummaries"`
	NextToken       string             `json:"nextToken,omitempty"`
}

type describeResponse struct {
	Tunnel tunnelOut `json:"tunnel"`
}

type listTagsResponse struct {
	Tags []Tag `json:"tags"`
}

type emptyResponse struct{}
