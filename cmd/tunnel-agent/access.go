package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/platform/service"
)

const (
	serviceUser = service.User
	// accessCommand is the hidden subcommand check-config runs as the
	// service user to try each file for real (permissions, ACLs, parents).
	accessCommand = "internal-check-access"
)

// self overrides os.Executable for the child (tests).
var self string

// unitPaths are where the unit is installed by `install` or a package.
var unitPaths = []string{"/etc/systemd/system/tunnel-agent.service", "/lib/systemd/system/tunnel-agent.service",
	"/usr/lib/systemd/system/tunnel-agent.service"}

func unitInstalled() bool {
	for _, p := range unitPaths {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// accessTargets lists what `run` opens: config file, certificates and the
// unix sockets of the services.
func accessTargets(cfg config.Config, configFile string) []string {
	var out []string
	for _, p := range []string{configFile, cfg.Cert, cfg.Key, cfg.RootCA, cfg.CAFile} {
		if p != "" {
			out = append(out, p)
		}
	}
	ids := make([]string, 0, len(cfg.Services))
	for id := range cfg.Services {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if a := cfg.Services[id]; strings.HasPrefix(a, "unix:") {
			out = append(out, a)
		}
	}
	return out
}

// checkAccess tries every target as the user the service runs as: as root
// by running this binary under that user's credentials, otherwise as the
// current user.
func checkAccess(r *report, cfg config.Config, configFile, asUser string) {
	targets := accessTargets(cfg, configFile)
	me, err := user.Current()
	if err != nil {
		r.warn("cannot tell the current user (%v): file access not checked", err)
		return
	}
	name := asUser
	if name == "" && os.Geteuid() == 0 {
		name = serviceUser
	}
	if name == "" || name == me.Username {
		report := map[string]string{}
		for _, t := range targets {
			report[t] = tryAccess(t)
		}
		reportAccess(r, me.Username, targets, report)
		return
	}
	u, err := user.Lookup(name)
	if err != nil {
		if asUser == "" {
			r.warn("the service user %s does not exist yet (`tunnel-agent install` or the package creates it): file access not checked for it", name)
		} else {
			r.fail("--as-user %s: %v", name, err)
		}
		return
	}
	if os.Geteuid() != 0 {
		r.warn("cannot check file access as %s without root: run `sudo tunnel-agent check-config`", name)
		return
	}
	report, err := accessAs(u, targets)
	if err != nil {
		r.warn("cannot check file access as %s: %v", name, err)
		return
	}
	reportAccess(r, name, targets, report)
}

func reportAccess(r *report, who string, targets []string, result map[string]string) {
	for _, t := range targets {
		msg, ok := result[t]
		switch {
		case !ok:
			r.warn("%s: not checked as %s", t, who)
		case msg == "":
			r.ok("%s readable by %s", t, who)
		case strings.HasPrefix(t, "unix:"):
			r.warn("%s: %s cannot connect: %s (is the service running? the socket must be writable by %s)", t, who, msg, who)
		default:
			r.fail("%s: %s cannot read it: %s: make it readable by the service user, e.g. chown root:%s %s && chmod 0640 %s (and its directories searchable)",
				t, who, msg, serviceUser, t, t)
		}
	}
}

// accessAs runs accessCommand under u's credentials.
func accessAs(u *user.User, targets []string) (map[string]string, error) {
	exe, err := os.Executable()
	if self != "" {
		exe, err = self, nil
	}
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	cmd := exec.Command(exe, append([]string{accessCommand}, targets...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = "/"
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()))
	}
	res := map[string]string{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if t, msg, ok := strings.Cut(sc.Text(), "\t"); ok {
			res[t] = msg
		}
	}
	return res, nil
}

// cmdCheckAccess is accessCommand: one line per target, "target\t" plus
// the error ("" when it is accessible).
func cmdCheckAccess(args []string, stdout io.Writer) error {
	for _, t := range args {
		fmt.Fprintf(stdout, "%s\t%s\n", t, tryAccess(t))
	}
	return nil
}

// tryAccess opens a file and reads a byte, or connects to "unix:/path".
func tryAccess(target string) string {
	if p, ok := strings.CutPrefix(target, "unix:"); ok {
		c, err := net.DialTimeout("unix", p, time.Second)
		if err != nil {
			return errMsg(err)
		}
		_ = c.Close()
		return ""
	}
	f, err := os.Open(target)
	if err != nil {
		return errMsg(err)
	}
	defer f.Close()
	if _, err := f.Read(make([]byte, 1)); err != nil && err != io.EOF {
		return errMsg(err)
	}
	return ""
}

func errMsg(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// sandboxHidden says why the unit's sandbox hides path, or "".
func sandboxHidden(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	under := func(dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }
	switch {
	case under("/home"), under("/root"), under("/run/user"):
		return "the unit's ProtectHome=yes makes it invisible to the service: move it under /etc/tunnel-agent/"
	case under("/tmp"), under("/var/tmp"):
		return "the unit's PrivateTmp=yes gives the service its own empty /tmp: move it under /etc/tunnel-agent/ (a socket: under /run)"
	}
	return ""
}

// checkSandbox finds paths the unit's sandbox hides or makes read-only.
// They are problems when the unit is installed, warnings otherwise.
func checkSandbox(r *report, cfg config.Config, installed bool) {
	say := r.warn
	prefix := "if run by the tunnel-agent systemd unit: "
	if installed {
		say, prefix = r.fail, ""
	}
	found := false
	for _, t := range accessTargets(cfg, "") {
		if why := sandboxHidden(strings.TrimPrefix(t, "unix:")); why != "" {
			say("%s%s: %s", prefix, t, why)
			found = true
		}
	}
	sd := filepath.Clean(cfg.StateDir)
	if sd != config.DefaultStateDir && !strings.HasPrefix(sd, config.DefaultStateDir+"/") {
		say("%sstate_dir %s: the unit's ProtectSystem=strict leaves only %s writable: use it, or add ReadWritePaths=%s in a drop-in (systemctl edit tunnel-agent)",
			prefix, cfg.StateDir, config.DefaultStateDir, cfg.StateDir)
		found = true
	}
	if !found {
		r.ok("no path is hidden by the unit's sandbox (ProtectHome, PrivateTmp, ProtectSystem=strict)")
	}
}
