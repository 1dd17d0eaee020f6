package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/tunnel-agent/tunnel-agent/cmd/internal/cmddoc"
	"github.com/tunnel-agent/tunnel-agent/configs"
	"github.com/tunnel-agent/tunnel-agent/platform/service"
)

// initScripts are what print-unit --init prints: the files of configs/,
// embedded at build time.
var initScripts = map[string]string{
	"systemd": configs.Unit,
	"sysv":    configs.SysVInit,
	"procd":   configs.ProcdInit,
}

func printUnitFlags(kind *string) *flag.FlagSet {
	fs := flag.NewFlagSet("print-unit", flag.ContinueOnError)
	fs.StringVar(kind, "init", "systemd", "which init system: systemd (the unit), sysv (BusyBox or SysV init script), procd (OpenWrt init script)")
	return fs
}

// cmdPrintUnit prints the systemd unit or an init script, byte for byte as in configs/.
func cmdPrintUnit(args []string, stdout io.Writer) error {
	var kind string
	fs := printUnitFlags(&kind)
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, ok := initScripts[kind]
	if !ok {
		return fmt.Errorf("print-unit: unknown --init %q: use systemd, sysv or procd", kind)
	}
	_, err := io.WriteString(stdout, s)
	return err
}

// commandDocs lists every command with its own flag set: the man page and the
// completions are generated from these, so they cannot miss a flag.
func commandDocs() []cmddoc.Command {
	var kind string
	check, _, _ := checkConfigFlags()
	status, _, _, _ := statusFlags()
	none := func(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }
	cmds := []struct {
		name, args, summary string
		fs                  *flag.FlagSet
	}{
		{"run", "", "run the agent in the foreground (what the systemd unit and the init scripts run)", newSettings("run", false).fs},
		{"greengrass", "", "run as a Greengrass v2 component (notifications over Greengrass IPC)", newSettings("greengrass", true).fs},
		{"check-config", "", "check the configuration, certificates and file access; --connect also tries the broker", check.fs},
		{"install", "", "create the tunnel-agent user, write " + service.UnitDir + "/tunnel-agent.service and enable it (binary at " + service.ExecPath + ")", none("install")},
		{"uninstall", "", "stop, disable and remove the unit that install wrote", none("uninstall")},
		{"start", "", "start the installed service", none("start")},
		{"stop", "", "stop the installed service", none("stop")},
		{"status", "", "what the running agent is doing: its notification source, live tunnels with connections and bytes per service, ended tunnels (asks the control socket)", status},
		{"print-unit", "", "print the systemd unit, or with --init an init script, to install by hand", printUnitFlags(&kind)},
		{"example-config", "", "print the commented example configuration (" + service.ConfigPath + ")", none("example-config")},
		{"completion", "bash|zsh|fish", "print the shell completion script", none("completion")},
		{"man", "", "print this manual page (roff): tunnel-agent man | man -l -", none("man")},
		{"version", "", "print the version", none("version")},
	}
	out := make([]cmddoc.Command, 0, len(cmds))
	for _, c := range cmds {
		out = append(out, cmddoc.Command{Name: c.name, Args: c.args, Summary: c.summary, Flags: cmddoc.FlagsOf(c.fs)})
	}
	return out
}

func manPage() cmddoc.Page {
	return cmddoc.Page{
		Program: "tunnel-agent", Section: "8", Version: version,
		Summary: "AWS IoT Secure Tunneling device agent",
		Description: []string{
			"tunnel-agent subscribes to the AWS IoT tunnel notify topic " +
				"($aws/things/THING/tunnels/notify) over MQTT with the device certificate, and for each " +
				"notification opens the tunnel as its destination, forwarding each stream to the local " +
				"service the allow-list maps its service id to (e.g. SSH to 127.0.0.1:22). Nothing else is ever dialed.",
			"Every configuration key can also be given as a flag; flags override the file. " +
				"The service runs as the unprivileged tunnel-agent user with its state (resumable tunnels' client tokens) in " + service.StateDir + ".",
		},
		Commands: commandDocs(),
		Sections: [][]string{
			{"Files",
				service.ConfigPath + ": the configuration (tunnel-agent example-config prints a commented example).",
				service.StateDir + ": the state directory and the service user's home.",
				"/lib/systemd/system/tunnel-agent.service (package) or " + service.UnitDir + "/tunnel-agent.service (install): the systemd unit; " +
					"/etc/init.d/tunnel-agent: the SysV/BusyBox or OpenWrt procd init script (tunnel-agent print-unit --init sysv|procd).",
			},
			{"Signals", "SIGTERM and SIGINT end every tunnel and exit within 5 seconds. SIGHUP asks the agent to reload its configuration (the init scripts' reload)."},
			{"Exit status", "0 on success, 1 on an error (the message says what to fix), 2 on a command-line mistake."},
		},
		SeeAlso: []string{"tunnelctl(1)", "tunnel-emulator(1)", "systemctl(1)", "journalctl(1)"},
	}
}

// sourceDate is the page's date: $SOURCE_DATE_EPOCH (reproducible builds) or now.
func sourceDate() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0)
		}
	}
	return time.Now()
}

func cmdCompletion(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("completion: name the shell: bash, zsh or fish (e.g. source <(tunnel-agent completion bash))")
	}
	p := manPage()
	switch args[0] {
	case "bash":
		return p.WriteBash(stdout)
	case "zsh":
		return p.WriteZsh(stdout)
	case "fish":
		return p.WriteFish(stdout)
	}
	return fmt.Errorf("completion: unknown shell %q: use bash, zsh or fish", args[0])
}
