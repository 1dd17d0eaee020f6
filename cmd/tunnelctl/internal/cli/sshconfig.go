package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// cmdSSHConfig prints the ~/.ssh/config block that sends ssh (and scp, sftp,
// rsync -e ssh, git, VS Code Remote-SSH, Ansible) through tunnelctl connect.
func (a *App) cmdSSHConfig(_ context.Context, g *globals, args []string) error {
	fs := g.flags("ssh-config", a.Stderr, withData)
	host := fs.String("host", "*.tunnel", "ssh Host pattern; the thing is the name before the first dot")
	user := fs.String("user", "", "remote user to put in the block (ssh User)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	if g.json {
		return usageError("ssh-config prints an ssh config block and has no JSON output: drop --json")
	}
	if strings.ContainsAny(*host, "\r\n") {
		return usageError("--host %q: one line only", *host)
	}
	self := a.Self
	if self == "" {
		if exe, err := os.Executable(); err == nil {
			self = exe
		} else {
			self = "tunnelctl"
		}
	}
	fmt.Fprint(a.Stdout, sshConfigBlock(self, *host, *user, holderGlobals(g)))
	return nil
}

// holderGlobals are the global flags to repeat in a ProxyCommand.
func holderGlobals(g *globals) []string {
	var args []string
	for _, f := range []struct{ name, v string }{{"endpoint", g.endpoint}, {"region", g.region}, {"profile", g.profile},
		{"data-endpoint", g.dataEndpoint}, {"ca-file", g.caFile}} {
		if f.v != "" {
			args = append(args, "--"+f.name, f.v)
		}
	}
	return args
}

// sshConfigBlock is the Host block. %n is the name as typed (pi-1.tunnel): connect
// takes the thing from it, and ssh keys known_hosts by it.
func sshConfigBlock(self, host, user string, globals []string) string {
	cmd := []string{quoteArg(self)}
	for _, a := range globals {
		cmd = append(cmd, quoteArg(a))
	}
	var b strings.Builder
	b.WriteString("# AWS IoT Secure Tunneling: `ssh pi-1.tunnel` reaches the thing pi-1 through a tunnel\n")
	b.WriteString("# shared by all your connections to it (scp, sftp, rsync, git, VS Code, Ansible too).\n")
	b.WriteString("# Paste into ~/.ssh/config (Windows: %USERPROFILE%\\.ssh\\config).\n")
	fmt.Fprintf(&b, "Host %s\n", host)
	fmt.Fprintf(&b, "    ProxyCommand %s connect %%n\n", strings.Join(cmd, " "))
	if user != "" {
		fmt.Fprintf(&b, "    User %s\n", user)
	}
	b.WriteString("    ServerAliveInterval 30\n")
	return b.String()
}

// quoteArg double-quotes an argument with spaces or quotes for ssh's command line
// (a POSIX shell runs it; Windows OpenSSH splits it the same way for "...").
func quoteArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\$`") {
		return s
	}
	if strings.ContainsAny(s, "\"$`") || (strings.Contains(s, "\\") && !strings.Contains(s, ":\\")) {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return `"` + s + `"`
}
