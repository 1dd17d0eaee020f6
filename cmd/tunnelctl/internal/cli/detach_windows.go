//go:build windows

package cli

import (
	"os"
	"os/exec"
	"syscall"
)

// Process creation flags (winbase.h).
const (
	createNewProcessGroup = 0x00000200
	detachedProcess       = 0x00000008
)

// detach makes cmd outlive its parent: no console (Ctrl-C in the terminal does
// not reach it) and a process group of its own.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: createNewProcessGroup | detachedProcess, HideWindow: true}
}

// terminate stops a child: Windows has no SIGTERM for another process.
func terminate(p *os.Process) error { return p.Kill() }
