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

// resolveARN accepts a tunnel ARN or a tunnel ID (looked up with DescribeTunnel).
func resolveARN(ctx context.Context, c *awsapi.Client, idOrARN string) (string, error) {
	if strings.HasPrefix(idOrARN, "arn:") {
		return idOrARN, nil
	}
	out, err := c.DescribeTunnel(ctx, &awsapi.DescribeTunnelInput{TunnelID: idOrARN})
	if err != nil {
		return "", err
	}
	return out.Tunnel.TunnelARN, nil
}

// resourceArgs parses flags and "ID|ARN rest...", and resolves the ARN.
func (a *App) resourceArgs(ctx context.Context, g *globals, name string, args []string, minRest int) (*awsapi.Client, string, []string, error) {
	fs := g.flagSet(name, a.Stderr)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, "", nil, err
	}
	if len(pos) < 1+minRest {
		return nil, "", nil, usageError("need a tunnel ID or ARN%s", map[bool]string{true: " and at least one more argument"}[minRest > 0])
	}
	c, err := g.client(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	arn, err := resolveARN(ctx, c, pos[0])
	if err != nil {
		return nil, "", nil, err
	}
	return c, arn, pos[1:], nil
}

func (a *App) cmdTag(ctx context.Context, g *globals, args []string) error {
	c, arn, rest, err := a.resourceArgs(ctx, g, "tag", args, 1)
	if err != nil {
		return err
	}
	tags, err := parseTags(rest)
	if err != nil {
		return err
	}
	if err := c.TagResource(ctx, &awsapi.TagResourceInput{ResourceARN: arn, Tags: tags}); err != nil {
		return err
	}
	if g.json {
		return a.printJSON(map[string]any{"resourceArn": arn, "tagged": tags})
	}
	fmt.Fprintf(a.Stdout, "Tagged %s with %d tag(s).\n", arn, len(tags))
	return nil
}

func (a *App) cmdUntag(ctx context.Context, g *globals, args []string) error {
	c, arn, keys, err := a.resourceArgs(ctx, g, "untag", args, 1)
	if err != nil {
		return err
	}
	if err := c.UntagResource(ctx, &awsapi.UntagResourceInput{ResourceARN: arn, TagKeys: keys}); err != nil {
		return err
	}
	if g.json {
		return a.printJSON(map[string]any{"resourceArn": arn, "untagged": keys})
	}
	fmt.Fprintf(a.Stdout, "Removed %d tag key(s) from %s.\n", len(keys), arn)
	return nil
}

func (a *App) cmdTags(ctx context.Context, g *globals, args []string) error {
	c, arn, rest, err := a.resourceArgs(ctx, g, "tags", args, 0)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("unexpected argument %q", rest[0])
	}
	out, err := c.ListTagsForResource(ctx, &awsapi.ListTagsForResourceInput{ResourceARN: arn})
	if err != nil {
		return err
	}
	if g.json {
		if out.Tags == nil {
			out.Tags = []awsapi.Tag{}
		}
		return a.printJSON(out)
	}
	if len(out.Tags) == 0 {
		fmt.Fprintln(a.Stdout, "No tags.")
	}
	for _, t := range out.Tags {
		fmt.Fprintf(a.Stdout, "%s=%s\n", t.Key, t.Value)
	}
	return nil
}
