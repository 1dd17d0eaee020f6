// Package cli implements tunnelctl, the operator's tool for AWS IoT Secure Tunneling:
// the tunnel API commands (open, close, describe, list, rotate, tag, untag, tags), the
// source local proxy, `ssh` through a fresh tunnel, and the local `demo`.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/cmd/tunnelctl/internal/demo"
	"github.com/tunnel-agent/tunnel-agent/platform/awsapi"
)

// Exit codes of tunnelctl.
const (
	ExitOK      = 0
	ExitFailure = 1 // service, network or runtime error
	ExitUsage   = 2 // bad command line
	// ExitInterrupted is the shell convention for SIGINT (128+2).
	ExitInterrupted = 130
)

// errUsage marks command-line mistakes (exit code 2).
var errUsage = errors.New("usage")

// usageError formats a command-line mistake.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// App is one tunnelctl invocation's environment. Run builds it from the process.
type App struct {
	Stdin          io.Reader // given to ssh; nil means no input
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// SSHPath is the ssh client binary ("ssh" from PATH when empty).
	SSHPath string
	// Self is the tunnelctl executable connect starts its tunnel holder with
	// (os.Executable when empty).
	Self string
	// Version is the build's version stamp ("dev" when empty).
	Version string
	// limitMemory makes proxy set the process's Go memory limit (see
	// proxyMemoryLimit); only the real process, not tests, sets it.
	limitMemory bool

	// onProxyReady, when set, receives the bound listener addresses (tests).
	onProxyReady func(addrs map[string]string)
	// runDemo, when set, replaces demo.Run (tests: the demo itself is
	// tested once, in package demo).
	runDemo func(ctx context.Context, cfg demo.Config) error
}

// Main runs the process's command line argv (program name first) with the
// build's version stamp and returns the exit code.
func Main(ctx context.Context, argv []string, version string, stdout, stderr io.Writer) int {
	a := &App{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr, Getenv: os.Getenv, Version: version, limitMemory: true}
	return a.Main(ctx, argv)
}

// Main runs argv (program name first). Invoked as "localproxy" (a symlink
// to tunnelctl), it is `tunnelctl localproxy` with all the arguments: a
// drop-in for the AWS C++ localproxy.
func (a *App) Main(ctx context.Context, argv []string) int {
	if len(argv) == 0 {
		return a.Run(ctx, nil)
	}
	args := argv[1:]
	name := argv[0][strings.LastIndexAny(argv[0], `/\`)+1:] // basename, also of a Windows path
	name = strings.TrimSuffix(strings.ToLower(name), ".exe")
	switch {
	case name == "localproxy":
		return a.Run(ctx, append([]string{"localproxy"}, args...))
	case len(args) == 1 && (args[0] == "version" || args[0] == "--version"):
		fmt.Fprintln(a.Stdout, "tunnelctl", a.version())
		return ExitOK
	}
	return a.Run(ctx, args)
}

func (a *App) cmdVersion(_ context.Context, g *globals, args []string) error {
	fs := g.flagSet("version", a.Stderr)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	if g.json {
		return a.printJSON(map[string]string{"version": a.version()})
	}
	fmt.Fprintln(a.Stdout, "tunnelctl", a.version())
	return nil
}

func (a *App) version() string {
	if a.Version == "" {
		return "dev"
	}
	return a.Version
}

type command struct {
	name, args, summary string
	run                 func(a *App, ctx context.Context, g *globals, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"open", "--thing NAME --service SVC [--service SVC...]", "open a tunnel to a device", (*App).cmdOpen},
		{"close", "TUNNEL_ID [--delete]", "close a tunnel", (*App).cmdClose},
		{"describe", "TUNNEL_ID", "show a tunnel", (*App).cmdDescribe},
		{"list", "[--thing NAME]", "list tunnels, newest first", (*App).cmdList},
		{"rotate", "TUNNEL_ID --mode source|destination|all", "replace access tokens", (*App).cmdRotate},
		{"tag", "TUNNEL_ID|ARN KEY=VALUE...", "add tags to a tunnel", (*App).cmdTag},
		{"untag", "TUNNEL_ID|ARN KEY...", "remove tags from a tunnel", (*App).cmdUntag},
		{"tags", "TUNNEL_ID|ARN", "list a tunnel's tags", (*App).cmdTags},
		{"proxy", "--services SSH=2222[,HTTP=8080]", "run the source local proxy", (*App).cmdProxy},
		{"ssh", "THING [--user U] [-- ssh args...]", "open a tunnel and ssh through it", (*App).cmdSSH},
		{"connect", "THING [SERVICE]", "join stdin/stdout to a service through a shared tunnel (ssh ProxyCommand)", (*App).cmdConnect},
		{"ssh-config", "[--host PATTERN]", "print the ~/.ssh/config block for connect", (*App).cmdSSHConfig},
		{"demo", "[--check]", "run emulator, agent and proxy locally", (*App).cmdDemo},
		{"localproxy", "-s PORTS|-d APPS -r REGION|-e HOST ...", "the local proxy with the AWS C++ localproxy's flags", (*App).cmdLocalproxy},
		{"completion", "bash|zsh|fish|powershell", "print the shell completion script", (*App).cmdCompletion},
		{"version", "", "print the version", (*App).cmdVersion},
		{holderCommand, "", "", (*App).cmdConnectHolder}, // started by connect; not in the help
	}
}

// Run dispatches args to a command and maps its error to an exit code and one line.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.Getenv == nil {
		a.Getenv = os.Getenv
	}
	g := &globals{stderr: a.Stderr}
	// Global flags may also come before the command name.
	pre := g.flags("tunnelctl", a.Stderr, withJSON|withData)
	pre.Usage = func() { a.usage() }
	if err := pre.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	args = pre.Args()
	if len(args) == 0 || args[0] == "help" {
		a.usage()
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(a, ctx, g, args[1:])
			for _, cl := range g.clients {
				cl.Close()
			}
			return a.report(c.name, err)
		}
	}
	fmt.Fprintf(a.Stderr, "tunnelctl: unknown command %q: run tunnelctl help\n", args[0])
	return ExitUsage
}

func (a *App) usage() {
	var b strings.Builder
	b.WriteString("tunnelctl: the operator's tool for AWS IoT Secure Tunneling\n\nCommands:\n")
	for _, c := range commands {
		if c.summary != "" {
			fmt.Fprintf(&b, "  %-10s %-48s %s\n", c.name, c.args, c.summary)
		}
	}
	b.WriteString("\nGlobal flags (before or after the command): --endpoint URL, --region R, --profile P, --json, --verbose;\n" +
		"for proxy, ssh and connect also --data-endpoint HOST:PORT, --ca-file PEM\n")
	b.WriteString("Run tunnelctl COMMAND -h for a command's flags.\n")
	io.WriteString(a.Stderr, b.String())
}

// report prints err as one line and returns the exit code.
func (a *App) report(cmd string, err error) int {
	var ec *exitCodeError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUsage):
		msg := strings.TrimPrefix(err.Error(), errUsage.Error()+": ")
		fmt.Fprintf(a.Stderr, "tunnelctl %s: %s (run tunnelctl %s -h)\n", cmd, msg, cmd)
		return ExitUsage
	case errors.As(err, &ec):
		return ec.code
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(a.Stderr, "tunnelctl %s: interrupted\n", cmd)
		return ExitInterrupted
	}
	fmt.Fprintf(a.Stderr, "tunnelctl %s: %s\n", cmd, describeError(err))
	return ExitFailure
}

// exitCodeError passes a child's exit code (ssh) through without a message.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// globals are the flags every command accepts.
type globals struct {
	endpoint, region, profile string
	dataEndpoint, caFile      string // the data plane (proxy, ssh, connect)
	json, verbose             bool
	clients                   []*awsapi.Client // API clients the command made
	stderr                    io.Writer        // where --verbose logs go
}

// apiLogger logs the API requests to stderr with --verbose, else nothing.
func (g *globals) apiLogger() *slog.Logger {
	if !g.verbose || g.stderr == nil {
		return nil
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Which optional global flags a command's flag set has.
type flagOpts int

const (
	withJSON flagOpts = 1 << iota // the command has JSON output
	withData                      // the command uses the data plane
)

// flagSet is the flag set of a command with JSON output and no data plane.
func (g *globals) flagSet(name string, out io.Writer) *flag.FlagSet {
	return g.flags(name, out, withJSON)
}

// flags builds a command's flag set with the global flags it accepts.
func (g *globals) flags(name string, out io.Writer, o flagOpts) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&g.endpoint, "endpoint", g.endpoint, "API endpoint URL (e.g. the emulator: http://127.0.0.1:8440; default: AWS_ENDPOINT_URL_IOTSECURETUNNELING, AWS_ENDPOINT_URL, the profile's, the region's)")
	fs.StringVar(&g.region, "region", g.region, "AWS region (default: AWS_REGION or the profile's)")
	fs.StringVar(&g.profile, "profile", g.profile, "shared config profile (default: AWS_PROFILE or default)")
	jsonUsage := "" // hidden: the command explains that it has no JSON output
	if o&withJSON != 0 {
		jsonUsage = "print JSON instead of text"
	}
	fs.BoolVar(&g.json, "json", g.json, jsonUsage)
	fs.BoolVar(&g.verbose, "verbose", g.verbose, "log debug details (API requests, the tunnel) to stderr")
	if o&withData != 0 {
		fs.StringVar(&g.dataEndpoint, "data-endpoint", g.dataEndpoint, "data-plane endpoint host:port (default: AWSIOT_TUNNEL_ENDPOINT, the profile's tunnel_data_endpoint, derived from the API endpoint)")
		fs.StringVar(&g.caFile, "ca-file", g.caFile, "extra CA certificate (PEM) for the data plane, e.g. the emulator's ca.pem (default: AWS_CA_BUNDLE or the profile's ca_bundle)")
	}
	return fs
}

// parse parses flags interspersed with positional arguments ("describe ID --json");
// everything after "--" is positional. It returns the positional arguments.
// The flag package's own messages are suppressed: errors become one line, -h prints the flags.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	defer fs.SetOutput(out)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printCommandUsage(out, fs.Name())
				printFlags(out, fs)
				return nil, err
			}
			return nil, usageError("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// printFlags prints the flags that have a usage text (the others are hidden).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	shown.SetOutput(w)
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage != "" {
			shown.Var(f.Value, f.Name, f.Usage)
			shown.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	shown.PrintDefaults()
}

// printCommandUsage prints a command's synopsis before its flags.
func printCommandUsage(w io.Writer, name string) {
	for _, c := range commands {
		if c.name == name {
			fmt.Fprintf(w, "Usage: tunnelctl %s %s\n  %s\n\nFlags:\n", c.name, c.args, c.summary)
			return
		}
	}
	fmt.Fprintf(w, "Usage of tunnelctl %s:\n", name)
}

// listFlag is a repeatable string flag; each value may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
