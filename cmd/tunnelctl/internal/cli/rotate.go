package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
)

func (a *App) cmdRotate(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("rotate", a.Stderr)
	mode := fs.String("mode", "", "which token to replace: source, destination or all")
	thing := fs.String("thing", "", "destination thing to notify with the new token (destination/all)")
	var services listFlag
	fs.Var(&services, "service", "service ID for the notification, repeatable (destination/all)")
	tokenDir := fs.String("token-file-dir", "", "write the new tokens to 0600 files in DIR instead of printing them")
	id, err := oneID(fs, args)
	if err != nil {
		return err
	}
	in := &awsapi.RotateTunnelAccessTokenInput{TunnelID: id}
	switch strings.ToLower(*mode) {
	case "source":
		in.ClientMode = awsapi.ClientModeSource
	case "destination":
		in.ClientMode = awsapi.ClientModeDestination
	case "all":
		in.ClientMode = awsapi.ClientModeAll
	default:
		return usageError("--mode must be source, destination or all")
	}
	if *thing != "" || len(services) > 0 {
		if in.ClientMode == awsapi.ClientModeSource {
			return usageError("--thing/--service only apply to --mode destination or all")
		}
		if len(services) == 0 {
			return usageError("--thing needs the tunnel's services (--service SSH ...)")
		}
		in.DestinationConfig = &awsapi.DestinationConfig{ThingName: *thing, Services: services}
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	out, err := c.RotateTunnelAccessToken(ctx, in)
	if err != nil {
		return err
	}
	files, err := writeTokens(*tokenDir, id, out.SourceAccessToken, out.DestinationAccessToken)
	if err != nil {
		return fmt.Errorf("tokens of %s were rotated but %w; rotate again", id, err)
	}
	logID := deviceLogID(out.DestinationAccessToken)
	if g.json {
		if files.Source != "" || files.Destination != "" {
			out.SourceAccessToken, out.DestinationAccessToken = "", ""
		}
		return a.printJSON(struct {
			*awsapi.RotateTunnelAccessTokenOutput
			tokenFiles
			DeviceLogID string `json:"deviceLogId,omitempty"`
		}{out, files, logID})
	}
	fmt.Fprintf(a.Stdout, "Rotated the %s access token(s) of tunnel %s.\n", in.ClientMode, id)
	if in.DestinationConfig != nil && in.DestinationConfig.ThingName != "" {
		fmt.Fprintf(a.Stdout, "%s was sent the new destination token over MQTT.\n", in.DestinationConfig.ThingName)
	}
	if logID != "" {
		fmt.Fprintf(a.Stdout, "%s", strings.Replace(deviceLogLine(logID), "\t", " ", 1))
	}
	a.printTokens(out.SourceAccessToken, out.DestinationAccessToken, files)
	return nil
}
