//go:build unix

package cli

import (
	"os"
	"os/exec"
	"syscall"
)

// detach makes cmd outlive its parent: a session of its own, so the terminal's
// SIGINT/SIGHUP and ssh ending its ProxyCommand do not reach it.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }

// terminate asks a child to stop (SIGTERM), for a clean exit.
func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
