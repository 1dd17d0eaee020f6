package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
)

// Service limits: a tunnel's lifetime and its services.
const (
	maxLifetime = 12 * time.Hour
	maxServices = 3
)

// client builds the API client from the global flags.
// The command's runner closes it (its idle connections) when the command ends.
// With --verbose every API request is logged to stderr (never a secret).
func (g *globals) client(ctx context.Context) (*awsapi.Client, error) {
	if g.endpoint != "" {
		if _, err := awsapi.ValidateEndpoint(g.endpoint); err != nil {
			return nil, usageError("--endpoint %q: the API endpoint is a URL such as http://127.0.0.1:8440 "+
				"(the data plane's host:port goes to --data-endpoint)", g.endpoint)
		}
	}
	c, err := awsapi.Load(ctx, awsapi.LoadOptions{
		Profile: g.profile, Region: g.region, Endpoint: g.endpoint, UserAgent: "tunnelctl", Logger: g.apiLogger(),
	})
	if err == nil {
		g.clients = append(g.clients, c)
	}
	return c, err
}

// describeError turns an error into one line that says what to do.
func describeError(err error) string {
	var ae *awsapi.APIError
	if !errors.As(err, &ae) {
		if errors.As(err, new(x509.UnknownAuthorityError)) && strings.Contains(err.Error(), "calling ") {
			return err.Error() + "; trust the API's CA with AWS_CA_BUNDLE=FILE or ca_bundle in the profile (the emulator's is its ca.pem)"
		}
		return err.Error()
	}
	msg := ae.Message
	if msg == "" {
		msg = "no details from the service"
	}
	switch ae.Code {
	case awsapi.CodeResourceNotFound:
		if strings.Contains(strings.ToLower(msg), "check the") {
			return fmt.Sprintf("not found (%s): %s (`tunnelctl list` shows the tunnels)", ae.Code, msg)
		}
		return fmt.Sprintf("not found (%s): %s; check the tunnel ID with `tunnelctl list`", ae.Code, msg)
	case awsapi.CodeLimitExceeded:
		if strings.Contains(strings.ToLower(msg), "service") {
			return fmt.Sprintf("limit exceeded (%s): %s; a tunnel carries at most %d services: open another tunnel for the others", ae.Code, msg, maxServices)
		}
		return fmt.Sprintf("limit exceeded (%s): %s; close tunnels you no longer need (`tunnelctl list`, `tunnelctl close ID`)", ae.Code, msg)
	case awsapi.CodeValidation:
		return fmt.Sprintf("invalid request (%s): %s", ae.Code, msg)
	}
	if strings.HasPrefix(ae.Code, "HTTP ") { // the service named no error code
		return fmt.Sprintf("%s failed (HTTP %d): %s", ae.Operation, ae.StatusCode, msg)
	}
	return fmt.Sprintf("%s failed (%s, HTTP %d): %s", ae.Operation, ae.Code, ae.StatusCode, msg)
}

func (a *App) cmdOpen(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("open", a.Stderr)
	thing := fs.String("thing", "", "destination thing name (the device is notified over MQTT)")
	var services, tags listFlag
	fs.Var(&services, "service", "service ID, repeatable or comma-separated (e.g. SSH)")
	fs.Var(&tags, "tag", "tag KEY=VALUE, repeatable")
	lifetime := fs.String("lifetime", "", "maximum lifetime, e.g. 30m or 2h (1m-12h; default 12h)")
	desc := fs.String("description", "", "description")
	tokenDir := fs.String("token-file-dir", "", "write the access tokens to 0600 files in DIR instead of printing them")
	noDest := fs.Bool("no-destination", false, "open a tunnel without a destination config (you hand the destination token over yourself)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	if flagGiven(fs, "description") && *desc == "" {
		return usageError("--description is empty: the service takes 1 to 2048 characters; leave the flag out for no description")
	}
	in := &awsapi.OpenTunnelInput{Description: *desc}
	if in.Tags, err = parseTags(tags); err != nil {
		return err
	}
	if *lifetime != "" {
		min, err := parseLifetime(*lifetime)
		if err != nil {
			return err
		}
		in.TimeoutConfig = &awsapi.TimeoutConfig{MaxLifetimeTimeoutMinutes: min}
	}
	switch {
	case *noDest && (*thing != "" || len(services) > 0):
		return usageError("--no-destination excludes --thing and --service")
	case *noDest:
	case len(services) == 0 && *thing == "":
		return usageError("name the device and its services: --thing NAME --service SSH (or --no-destination)")
	case len(services) == 0:
		return usageError("--thing needs at least one --service (e.g. --service SSH)")
	case len(services) > maxServices:
		return usageError("%d services given: a tunnel carries at most %d; open another tunnel for the others", len(services), maxServices)
	default:
		in.DestinationConfig = &awsapi.DestinationConfig{ThingName: *thing, Services: services}
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	out, err := c.OpenTunnel(ctx, in)
	if err != nil {
		return err
	}
	files, err := writeTokens(*tokenDir, out.TunnelID, out.SourceAccessToken, out.DestinationAccessToken)
	if err != nil {
		return fmt.Errorf("tunnel %s is open but %w; close it with `tunnelctl close %s`", out.TunnelID, err, out.TunnelID)
	}
	return a.printOpen(g, in, out, files)
}

// flagGiven reports whether the flag was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// parseLifetime accepts a Go duration ("30m", "2h") or bare minutes ("90").
func parseLifetime(s string) (int, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		if nerr != nil {
			return 0, usageError("--lifetime %q: use a duration like 30m or 2h", s)
		}
		d = time.Duration(n) * time.Minute
	}
	if d < time.Minute || d > maxLifetime || d%time.Minute != 0 {
		return 0, usageError("--lifetime %s: must be whole minutes between 1m and 12h", s)
	}
	return int(d / time.Minute), nil
}

func parseTags(kvs []string) ([]awsapi.Tag, error) {
	var tags []awsapi.Tag
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError("tag %q: use KEY=VALUE", kv)
		}
		tags = append(tags, awsapi.Tag{Key: k, Value: v})
	}
	return tags, nil
}

func (a *App) cmdClose(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("close", a.Stderr)
	del := fs.Bool("delete", false, "also delete the tunnel's record now")
	id, err := oneID(fs, args)
	if err != nil {
		return err
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	if err := c.CloseTunnel(ctx, &awsapi.CloseTunnelInput{TunnelID: id, Delete: *del}); err != nil {
		return err
	}
	if g.json {
		return a.printJSON(map[string]any{"tunnelId": id, "closed": true, "deleted": *del})
	}
	verb := "closed"
	if *del {
		verb = "closed and deleted"
	}
	fmt.Fprintf(a.Stdout, "Tunnel %s %s.\n", id, verb)
	return nil
}

// oneID parses flags and exactly one positional tunnel ID.
func oneID(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usageError("need exactly one tunnel ID, got %d arguments", len(pos))
	}
	return pos[0], nil
}

func (a *App) cmdDescribe(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("describe", a.Stderr)
	tokenDir := fs.String("token-file-dir", "", "DIR given to open/rotate: show the device log id from the destination token file there")
	id, err := oneID(fs, args)
	if err != nil {
		return err
	}
	logID, err := deviceLogIDFromDir(*tokenDir, id)
	if err != nil {
		return err
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	out, err := c.DescribeTunnel(ctx, &awsapi.DescribeTunnelInput{TunnelID: id})
	if err != nil {
		return err
	}
	if g.json {
		return a.printJSON(struct {
			*awsapi.DescribeTunnelOutput
			DeviceLogID string `json:"deviceLogId,omitempty"`
		}{out, logID})
	}
	a.printTunnel(&out.Tunnel, logID)
	return nil
}

func (a *App) cmdList(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("list", a.Stderr)
	thing := fs.String("thing", "", "only tunnels to this thing")
	limit := fs.Int("max", 0, "show at most N tunnels (default all)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	list, err := c.ListAllTunnels(ctx, *thing, *limit)
	if err != nil {
		return err
	}
	if g.json {
		if list == nil {
			list = []awsapi.TunnelSummary{}
		}
		return a.printJSON(map[string]any{"tunnelSummaries": list})
	}
	a.printList(list)
	return nil
}
