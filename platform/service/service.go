// Package service installs and controls tunnel-agent as a systemd service
// (our own hardened unit, configs/tunnel-agent.service, written verbatim and
// driven through systemctl, whose own error messages reach the user) and
// reports readiness to systemd (sd_notify) at run time.
package service

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"

	ksvc "github.com/kardianos/service"
)

// Actions accepted by Control.
const (
	ActionInstall   = "install"
	ActionUninstall = "uninstall"
	ActionStart     = "start"
	ActionStop      = "stop"
	ActionStatus    = "status"
)

// Sentinel errors.
var (
	// ErrNoSystemd means the host does not run systemd.
	ErrNoSystemd = errors.New("systemd is not the init system here")
	// ErrUnknownAction is returned for an action Control does not know.
	ErrUnknownAction = errors.New("unknown service action")
	// ErrExecPath means the binary is not where the unit expects it.
	ErrExecPath = errors.New("binary not at the unit's ExecStart path")
	// ErrNotInstalled means systemd has no tunnel-agent unit.
	ErrNotInstalled = errors.New("tunnel-agent is not installed as a systemd service")
	// ErrSystemctl means systemctl failed; the error carries its output.
	ErrSystemctl = errors.New("systemctl failed")
)

// Options let tests and packagers change what Control acts on. Zero values
// mean the real system.
type Options struct {
	// ExecPath is checked to exist before install (default ExecPath).
	ExecPath string
	// CreateUser adds the system user when missing (install).
	CreateUser bool
	// UnitDir is where install writes the unit (default UnitDir).
	UnitDir string
	// Systemctl is the systemctl binary (default "systemctl" from PATH).
	Systemctl string
	// SystemdRunDir exists when systemd is PID 1 (default /run/systemd/system).
	SystemdRunDir string
}

func (o *Options) defaults() {
	if o.ExecPath == "" {
		o.ExecPath = ExecPath
	}
	if o.UnitDir == "" {
		o.UnitDir = UnitDir
	}
	if o.Systemctl == "" {
		o.Systemctl = "systemctl"
	}
	if o.SystemdRunDir == "" {
		o.SystemdRunDir = "/run/systemd/system"
	}
}

const unitName = Name + ".service"

// Control performs install, uninstall, start, stop or status and returns a
// line for the user.
func Control(action string, o Options) (string, error) {
	o.defaults()
	switch action {
	case ActionInstall, ActionUninstall, ActionStart, ActionStop, ActionStatus:
	default:
		return "", fmt.Errorf("%w %q: use install, uninstall, start, stop or status", ErrUnknownAction, action)
	}
	if fi, err := os.Stat(o.SystemdRunDir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%w (init system found: %s): %s", ErrNoSystemd, detectedInit(), HandInstallHint)
	}
	switch action {
	case ActionInstall:
		return install(o)
	case ActionUninstall:
		return uninstall(o)
	case ActionStatus:
		return status(o)
	}
	if _, err := o.systemctl(action, unitName); err != nil {
		return "", fmt.Errorf("%w (the agent's log: journalctl -u %s -e)", err, Name)
	}
	return fmt.Sprintf("%s: %s done", Name, action), nil
}

// systemctl runs systemctl and returns its trimmed output; on failure the
// error carries that output, which says what went wrong.
func (o Options) systemctl(args ...string) (string, error) {
	out, err := exec.Command(o.Systemctl, args...).CombinedOutput()
	text := strings.TrimSpace(string(out))
	const max = 2048
	if len(text) > max {
		text = text[:max] + "..."
	}
	if err != nil {
		if text == "" {
			return "", fmt.Errorf("%w: systemctl %s: %w", ErrSystemctl, strings.Join(args, " "), err)
		}
		return text, fmt.Errorf("%w: systemctl %s: %w: %s", ErrSystemctl, strings.Join(args, " "), err, text)
	}
	return text, nil
}

// install creates the user, writes the unit, reloads systemd and enables the
// unit. On failure it removes what it wrote (or restores the unit it replaced)
// and the user it created.
func install(o Options) (string, error) {
	if p, err := filepath.EvalSymlinks(o.ExecPath); err != nil || p == "" {
		return "", fmt.Errorf("%w: %s is missing: copy the binary there first (install -m 0755 tunnel-agent %s)",
			ErrExecPath, o.ExecPath, o.ExecPath)
	}
	createdUser := false
	if o.CreateUser {
		var err error
		if createdUser, err = ensureUser(User); err != nil {
			return "", err
		}
	}
	path := filepath.Join(o.UnitDir, unitName)
	old, readErr := os.ReadFile(path)
	undo := func() {
		if readErr == nil {
			_ = writeFile(path, old)
		} else {
			_ = os.Remove(path)
		}
		if createdUser {
			removeUser(User)
		}
	}
	if err := writeFile(path, []byte(Unit)); err != nil {
		undo()
		return "", fmt.Errorf("write the unit: %w", err)
	}
	for _, args := range [][]string{{"daemon-reload"}, {"enable", unitName}} {
		if _, err := o.systemctl(args...); err != nil {
			undo()
			_, _ = o.systemctl("daemon-reload")
			return "", fmt.Errorf("install: %w (removed %s again; %s)", err, path, HandInstallHint)
		}
	}
	if _, err := os.Stat(ConfigPath); err != nil {
		return fmt.Sprintf("%s installed and enabled; put the config in %s (`tunnel-agent example-config > %s` "+
			"writes the commented example; certificates readable by group %s: chown root:%s, chmod 0640), "+
			"then `tunnel-agent start`", Name, ConfigPath, ConfigPath, User, User), nil
	}
	return fmt.Sprintf("%s installed and enabled; start it with `tunnel-agent start`", Name), nil
}

// writeFile writes b to path through a temporary file and a rename.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func uninstall(o Options) (string, error) {
	path := filepath.Join(o.UnitDir, unitName)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%w by `tunnel-agent install`: no %s (if a package installed it, remove the package)",
			ErrNotInstalled, path)
	}
	if _, err := o.systemctl("disable", "--now", unitName); err != nil {
		return "", err
	}
	if err := os.Remove(path); err != nil {
		return "", fmt.Errorf("remove the unit: %w", err)
	}
	if _, err := o.systemctl("daemon-reload"); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: stopped, disabled and removed %s (the %s user and %s stay)", Name, path, User, StateDir), nil
}

func status(o Options) (string, error) {
	load, err := o.systemctl("show", "--property=LoadState", "--value", unitName)
	if err != nil {
		return "", err
	}
	if load == "not-found" {
		return "", fmt.Errorf("%w: run `tunnel-agent install` (bare binary in %s) or install the package", ErrNotInstalled, ExecPath)
	}
	// is-active exits non-zero for every state but active: its output is the answer.
	state, _ := o.systemctl("is-active", unitName)
	if state == "" {
		state = "unknown"
	}
	msg := fmt.Sprintf("%s: %s", Name, state)
	if state == "failed" {
		msg += fmt.Sprintf(" (see journalctl -u %s -e)", Name)
	}
	return msg, nil
}

// ensureUser creates the system user and group when missing and reports
// whether it did. Home is StateDir everywhere (packages, init scripts).
func ensureUser(name string) (bool, error) {
	if _, err := user.Lookup(name); err == nil {
		return false, nil
	}
	var cmds [][]string
	if _, err := exec.LookPath("useradd"); err == nil {
		cmds = [][]string{{"useradd", "--system", "--user-group", "--no-create-home", "--home-dir", StateDir,
			"--shell", nologin(), "--comment", "AWS IoT Secure Tunneling agent", name}}
	} else {
		// BusyBox.
		cmds = [][]string{{"addgroup", "-S", name}, {"adduser", "-S", "-D", "-H", "-h", StateDir, "-s", "/bin/false", "-G", name, name}}
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return false, fmt.Errorf("create system user %s: %s: %w: %s (create it by hand with home %s and run install again)",
				name, c[0], err, strings.TrimSpace(string(out)), StateDir)
		}
	}
	return true, nil
}

func removeUser(name string) {
	if _, err := exec.LookPath("userdel"); err == nil {
		_ = exec.Command("userdel", name).Run()
		_ = exec.Command("groupdel", name).Run()
		return
	}
	_ = exec.Command("deluser", name).Run()
	_ = exec.Command("delgroup", name).Run()
}

func nologin() string {
	for _, p := range []string{"/usr/sbin/nologin", "/sbin/nologin"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/bin/false"
}

// detectedInit names the host's init system as kardianos/service detects it
// (linux-systemd, unix-systemv, linux-openrc, linux-upstart...), so a user
// without systemd learns which print-unit variant to pick.
func detectedInit() string {
	if s := ksvc.ChosenSystem(); s != nil {
		return s.String()
	}
	return "none recognised"
}
