// Package service installs and controls tunnel-agent as a systemd service
// (through kardianos/service, with our own hardened unit file) and reports
// readiness to systemd (sd_notify) at run time.
package service

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"

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
)

// Options let tests and packagers change what Control acts on.
type Options struct {
	// ExecPath is checked to exist before install (default ExecPath).
	ExecPath string
	// CreateUser adds the system user when missing (default true via Control).
	CreateUser bool
}

type noop struct{}

func (noop) Start(ksvc.Service) error { return nil }
func (noop) Stop(ksvc.Service) error  { return nil }

// Config is the kardianos configuration using Unit as the systemd script.
func Config() *ksvc.Config {
	return &ksvc.Config{
		Name:        Name,
		DisplayName: "tunnel-agent",
		Description: "AWS IoT Secure Tunneling device agent",
		Executable:  ExecPath,
		Arguments:   []string{"run", "--config", ConfigPath},
		Option:      ksvc.KeyValue{"SystemdScript": Unit},
	}
}

// Control performs install, uninstall, start, stop or status and returns a
// line for the user.
func Control(action string, o Options) (string, error) {
	if o.ExecPath == "" {
		o.ExecPath = ExecPath
	}
	switch action {
	case ActionInstall, ActionUninstall, ActionStart, ActionStop, ActionStatus:
	default:
		return "", fmt.Errorf("%w %q: use install, uninstall, start, stop or status", ErrUnknownAction, action)
	}
	if ksvc.ChosenSystem() == nil || ksvc.ChosenSystem().String() != "linux-systemd" {
		return "", fmt.Errorf("%w: install the unit by hand from configs/tunnel-agent.service", ErrNoSystemd)
	}
	s, err := ksvc.New(noop{}, Config())
	if err != nil {
		return "", fmt.Errorf("service: %w", err)
	}
	switch action {
	case ActionInstall:
		return install(s, o)
	case ActionUninstall, ActionStart, ActionStop:
		if err := ksvc.Control(s, action); err != nil {
			return "", fmt.Errorf("service %s: %w", action, err)
		}
		return fmt.Sprintf("%s: %s done", Name, action), nil
	case ActionStatus:
		st, err := s.Status()
		if err != nil {
			return "", fmt.Errorf("service status: %w (is it installed? run `tunnel-agent install`)", err)
		}
		return fmt.Sprintf("%s: %s", Name, statusText(st)), nil
	}
	return "", nil
}

func install(s ksvc.Service, o Options) (string, error) {
	if p, err := filepath.EvalSymlinks(o.ExecPath); err != nil || p == "" {
		return "", fmt.Errorf("%w: %s is missing: copy the binary there first (install -m 0755 tunnel-agent %s)",
			ErrExecPath, o.ExecPath, o.ExecPath)
	}
	if o.CreateUser {
		if err := ensureUser(User); err != nil {
			return "", err
		}
	}
	if err := s.Install(); err != nil {
		return "", fmt.Errorf("service install: %w", err)
	}
	msg := fmt.Sprintf("%s installed and enabled; put the config in %s "+
		"(certificates readable by group %s: chown root:%s, chmod 0640), then `tunnel-agent start`",
		Name, ConfigPath, User, User)
	if _, err := os.Stat(ConfigPath); err == nil {
		msg = fmt.Sprintf("%s installed and enabled; start it with `tunnel-agent start`", Name)
	}
	return msg, nil
}

func ensureUser(name string) error {
	if _, err := user.Lookup(name); err == nil {
		return nil
	}
	cmd := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", "--user-group", name)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("create system user %s: %w: %s (create it by hand and run install again)", name, err, out)
	}
	return nil
}

func statusText(s ksvc.Status) string {
	switch s {
	case ksvc.StatusRunning:
		return "running"
	case ksvc.StatusStopped:
		return "stopped"
	}
	return "unknown"
}
