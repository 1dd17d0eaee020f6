package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
)

func (a *App) printJSON(v any) error {
	enc := json.NewEncoder(a.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *App) printOpen(g *globals, in *awsapi.OpenTunnelInput, out *awsapi.OpenTunnelOutput, files tokenFiles) error {
	logID := deviceLogID(out.DestinationAccessToken)
	if g.json {
		if files.Source != "" { // the tokens went to files: no empty token fields
			return a.printJSON(struct {
				TunnelID  string `json:"tunnelId"`
				TunnelARN string `json:"tunnelArn"`
				tokenFiles
				DeviceLogID string `json:"deviceLogId,omitempty"`
			}{out.TunnelID, out.TunnelARN, files, logID})
		}
		return a.printJSON(struct {
			*awsapi.OpenTunnelOutput
			tokenFiles
			DeviceLogID string `json:"deviceLogId,omitempty"`
		}{out, files, logID})
	}
	w := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Tunnel opened:\t%s\n", out.TunnelID)
	fmt.Fprintf(w, "ARN:\t%s\n", out.TunnelARN)
	if dc := in.DestinationConfig; dc != nil {
		if dc.ThingName != "" {
			fmt.Fprintf(w, "Thing:\t%s (sent the destination token over MQTT)\n", dc.ThingName)
		}
		fmt.Fprintf(w, "Services:\t%s\n", strings.Join(dc.Services, ", "))
	}
	if logID != "" {
		fmt.Fprint(w, deviceLogLine(logID))
	}
	if tc := in.TimeoutConfig; tc != nil {
		fmt.Fprintf(w, "Lifetime:\t%s\n", fmtMinutes(tc.MaxLifetimeTimeoutMinutes))
	}
	w.Flush()
	a.printTokens(out.SourceAccessToken, out.DestinationAccessToken, files)
	next := "AWSIOT_TUNNEL_ACCESS_TOKEN set to the source token"
	if files.Source != "" {
		next = "--token-file " + files.Source
	}
	fmt.Fprintf(a.Stdout, "Next: tunnelctl proxy --services SVC=PORT with %s.\n", next)
	return nil
}

func (a *App) printTokens(source, destination string, files tokenFiles) {
	if files.Source != "" {
		fmt.Fprintf(a.Stdout, "Source access token written to %s\n", files.Source)
	} else if source != "" {
		fmt.Fprintf(a.Stdout, "Source access token (for tunnelctl proxy; single use, keep it secret):\n  %s\n", source)
	}
	if files.Destination != "" {
		fmt.Fprintf(a.Stdout, "Destination access token written to %s\n", files.Destination)
	} else if destination != "" {
		fmt.Fprintf(a.Stdout, "Destination access token (for the device; keep it secret):\n  %s\n", destination)
	}
}

func fmtTime(t awsapi.EpochTime) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func fmtConn(cs *awsapi.ConnectionState) string {
	if cs == nil || cs.Status == "" {
		return "-"
	}
	if cs.LastUpdatedAt.IsZero() {
		return cs.Status
	}
	return cs.Status + " since " + fmtTime(cs.LastUpdatedAt)
}

// printTunnel shows a tunnel; logID, when known, is the id its device logs.
func (a *App) printTunnel(t *awsapi.Tunnel, logID string) {
	w := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Tunnel:\t%s\n", t.TunnelID)
	fmt.Fprintf(w, "ARN:\t%s\n", t.TunnelARN)
	fmt.Fprintf(w, "Status:\t%s\n", t.Status)
	if dc := t.DestinationConfig; dc != nil {
		if dc.ThingName != "" {
			fmt.Fprintf(w, "Thing:\t%s\n", dc.ThingName)
		}
		fmt.Fprintf(w, "Services:\t%s\n", strings.Join(dc.Services, ", "))
	}
	if logID != "" {
		fmt.Fprint(w, deviceLogLine(logID))
	}
	fmt.Fprintf(w, "Source:\t%s\n", fmtConn(t.SourceConnectionState))
	fmt.Fprintf(w, "Destination:\t%s\n", fmtConn(t.DestinationConnectionState))
	if tc := t.TimeoutConfig; tc != nil && tc.MaxLifetimeTimeoutMinutes > 0 {
		life := time.Duration(tc.MaxLifetimeTimeoutMinutes) * time.Minute
		exp := ""
		if !t.CreatedAt.IsZero() {
			exp = " (until " + fmtTime(awsapi.EpochTime{Time: t.CreatedAt.Add(life)}) + ")"
		}
		fmt.Fprintf(w, "Lifetime:\t%s%s\n", fmtMinutes(tc.MaxLifetimeTimeoutMinutes), exp)
	}
	fmt.Fprintf(w, "Created:\t%s\n", fmtTime(t.CreatedAt))
	fmt.Fprintf(w, "Updated:\t%s\n", fmtTime(t.LastUpdatedAt))
	if t.Description != "" {
		fmt.Fprintf(w, "Description:\t%s\n", t.Description)
	}
	if len(t.Tags) > 0 {
		kv := make([]string, len(t.Tags))
		for i, tg := range t.Tags {
			kv[i] = tg.Key + "=" + tg.Value
		}
		fmt.Fprintf(w, "Tags:\t%s\n", strings.Join(kv, ", "))
	}
	w.Flush()
}

func (a *App) printList(list []awsapi.TunnelSummary) {
	if len(list) == 0 {
		fmt.Fprintln(a.Stdout, "No tunnels.")
		return
	}
	w := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TUNNEL ID\tSTATUS\tCREATED\tDESCRIPTION")
	for _, s := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.TunnelID, s.Status, fmtTime(s.CreatedAt), s.Description)
	}
	w.Flush()
}

// fmtMinutes prints a lifetime as 30m, 2h or 1h30m.
func fmtMinutes(m int) string {
	s := (time.Duration(m) * time.Minute).String()
	s = strings.TrimSuffix(s, "0s")
	return strings.TrimSuffix(s, "h0m") + map[bool]string{true: "h"}[strings.HasSuffix(s, "h0m")]
}
