// Command docgen writes the man pages of tunnelctl(1) and tunnel-emulator(1)
// from the programs' own flag definitions: it runs the built binaries' help
// (`tunnelctl help`, `tunnelctl CMD -h`, `tunnel-emulator -h`, `tunnel-emulator
// certs -h`) and parses what flag.PrintDefaults printed. tunnel-agent writes its
// own page (`tunnel-agent man`). Used by scripts/build.sh:
//
//	go run ./cmd/internal/docgen --tunnelctl BIN --tunnel-emulator BIN --out DIR
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tunnel-agent/tunnel-agent/cmd/internal/cmddoc"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "docgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("docgen", flag.ContinueOnError)
	ctl := fs.String("tunnelctl", "", "tunnelctl binary (host architecture)")
	emu := fs.String("tunnel-emulator", "", "tunnel-emulator binary (host architecture)")
	out := fs.String("out", "", "output directory for tunnelctl.1 and tunnel-emulator.1")
	version := fs.String("version", "dev", "version shown in the pages' footer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || (*ctl == "" && *emu == "") {
		return errors.New("need --out and at least one of --tunnelctl, --tunnel-emulator")
	}
	date := time.Now()
	if n, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		date = time.Unix(n, 0)
	}
	pages := map[string]func(string) (cmddoc.Page, error){"tunnelctl": tunnelctlPage, "tunnel-emulator": emulatorPage}
	for name, bin := range map[string]string{"tunnelctl": *ctl, "tunnel-emulator": *emu} {
		if bin == "" {
			continue
		}
		p, err := pages[name](bin)
		if err != nil {
			return err
		}
		p.Version = *version
		var b bytes.Buffer
		if err := p.WriteMan(&b, date); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*out, name+".1"), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// help runs bin with args and returns what it printed (help exits 0 or 2).
func help(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() <= 2) {
		return "", fmt.Errorf("%s %s: %w", bin, strings.Join(args, " "), err)
	}
	return string(out), nil
}

func tunnelctlPage(bin string) (cmddoc.Page, error) {
	top, err := help(bin, "help")
	if err != nil {
		return cmddoc.Page{}, err
	}
	var names []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(top))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Commands:":
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in:
			names = append(names, strings.Fields(line)[0])
		}
	}
	if len(names) == 0 {
		return cmddoc.Page{}, fmt.Errorf("%s help lists no commands", bin)
	}
	p := cmddoc.Page{
		Program: "tunnelctl", Section: "1", Summary: "the operator's tool for AWS IoT Secure Tunneling",
		Description: []string{
			"tunnelctl opens, inspects, rotates and closes tunnels through the AWS IoT Secure Tunneling API, " +
				"runs the source local proxy, connects ssh through a fresh tunnel in one step, and runs a local demo of the whole chain. " +
				"Invoked as localproxy (a symlink), it takes the AWS C++ localproxy's command line.",
			"Credentials come from the AWS SDK's chain (environment, shared config and credentials files, SSO, instance role). " +
				"Access tokens are never taken from the command line.",
		},
		Sections: [][]string{{"Exit status", "0 on success, 1 on a service, network or runtime error, 2 on a command-line mistake, 130 when interrupted."}},
		SeeAlso:  []string{"tunnel-agent(8)", "tunnel-emulator(1)", "ssh(1)"},
	}
	for _, name := range names {
		text, err := help(bin, name, "-h")
		if err != nil {
			return p, err
		}
		c := cmddoc.Command{Name: name, Flags: cmddoc.ParseDefaults(text)}
		lines := strings.Split(text, "\n")
		if len(lines) > 1 && strings.HasPrefix(lines[0], "Usage: tunnelctl "+name) {
			c.Args = strings.TrimSpace(strings.TrimPrefix(lines[0], "Usage: tunnelctl "+name))
			c.Summary = strings.TrimSpace(lines[1])
		}
		if len(c.Flags) == 0 {
			return p, fmt.Errorf("%s %s -h shows no flags:\n%s", bin, name, text)
		}
		p.Commands = append(p.Commands, c)
	}
	return p, nil
}

func emulatorPage(bin string) (cmddoc.Page, error) {
	main, err := help(bin, "-h")
	if err != nil {
		return cmddoc.Page{}, err
	}
	certs, err := help(bin, "certs", "-h")
	if err != nil {
		return cmddoc.Page{}, err
	}
	p := cmddoc.Page{
		Program: "tunnel-emulator", Section: "1", Summary: "a local stand-in for AWS IoT Secure Tunneling",
		Description: []string{
			"tunnel-emulator runs the AWS side of AWS IoT Secure Tunneling on loopback: the control-plane API, " +
				"the data-plane WebSocket relay and an MQTT broker with mutual TLS that publishes tunnel notifications, " +
				"so tunnel-agent and tunnelctl can be tried and tested without an AWS account.",
		},
		Commands: []cmddoc.Command{
			{Summary: "run the API, the data plane and the MQTT broker on loopback", Flags: cmddoc.ParseDefaults(main)},
			{Name: "certs", Args: "--thing NAME [--out DIR] [--state-dir DIR]", Summary: "issue a device certificate for the broker's mutual TLS", Flags: cmddoc.ParseDefaults(certs)},
		},
		SeeAlso: []string{"tunnel-agent(8)", "tunnelctl(1)"},
	}
	for _, c := range p.Commands {
		if len(c.Flags) == 0 {
			return p, fmt.Errorf("%s %s -h shows no flags", bin, c.Name)
		}
	}
	return p, nil
}
