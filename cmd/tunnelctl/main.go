// Command tunnelctl is the operator's tool for AWS IoT Secure Tunneling: it opens,
// inspects and closes tunnels, runs the source local proxy, connects ssh through a
// tunnel in one step, and runs a local demo of the whole chain. Invoked as
// "localproxy" (a symlink), it takes the AWS C++ localproxy's command line.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tunnel-agent/tunnel-agent/cmd/tunnelctl/internal/cli"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args, version, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
