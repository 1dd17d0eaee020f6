// Command tunnel-agent is the AWS IoT Secure Tunneling device agent: it
// receives tunnel notifications over MQTT (or Greengrass IPC) and serves
// each tunnel as a destination, forwarding to the local services it allows.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tunnel-agent/tunnel-agent/configs"
	"github.com/tunnel-agent/tunnel-agent/platform/service"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

const usage = `usage: tunnel-agent <command> [flags]

commands:
  run           run the agent in the foreground (what the systemd unit runs)
  greengrass    run as a Greengrass v2 component (notifications over Greengrass IPC)
  check-config  check the configuration, certificates and file access; --connect also tries the broker
  install       install and enable the systemd service (binary at /usr/local/bin/tunnel-agent)
  uninstall     disable and remove the systemd service
  status        what the running agent is doing: tunnels, connections, bytes (--json)
  start | stop  control the installed service
  print-unit    print the systemd unit (--init sysv|procd: the init script) to install by hand
  example-config  print the commented example configuration
  completion    print shell completion (bash, zsh, fish)
  man           print the manual page (tunnel-agent man | man -l -)
  version       print the version

Run "tunnel-agent <command> -h" for the flags (every config key has one).
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(rest, stderr, false)
	case "greengrass":
		err = cmdRun(rest, stdout, true)
	case service.ActionStatus:
		err = cmdStatus(rest, stdout)
	case "check-config":
		err = cmdCheckConfig(rest, stdout)
	case accessCommand:
		err = cmdCheckAccess(rest, stdout)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "tunnel-agent", version)
	case "print-unit":
		err = cmdPrintUnit(rest, stdout)
	case "example-config":
		_, err = io.WriteString(stdout, configs.ExampleConfig)
	case "completion":
		err = cmdCompletion(rest, stdout)
	case "man":
		err = manPage().WriteMan(stdout, sourceDate())
	case service.ActionInstall, service.ActionUninstall, service.ActionStart, service.ActionStop:
		err = cmdControl(cmd, rest, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "tunnel-agent: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		if !ue.printed {
			fmt.Fprintln(stderr, "tunnel-agent:", err)
		}
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "tunnel-agent:", err)
		return 1
	}
	return 0
}

func cmdControl(action string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(action, flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err: err, printed: true}
	}
	msg, err := service.Control(action, service.Options{CreateUser: true})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, msg)
	return nil
}
