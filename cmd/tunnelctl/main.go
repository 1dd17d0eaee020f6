// Command tunnelctl is the operator's tool for AWS IoT Secure Tunneling: it opens,
// inspects and closes tunnels, runs the source local proxy, connects ssh through a
// tunnel in one step, and runs a local demo of the whole chain.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tunnel-agent/tunnel-agent/cmd/tunnelctl/internal/cli"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println("tunnelctl", version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
