package service

import "github.com/tunnel-agent/tunnel-agent/configs"

// Paths and names the unit file, the init scripts and the packages share.
const (
	ExecPath   = "/usr/local/bin/tunnel-agent"
	ConfigPath = "/etc/tunnel-agent/config.yaml"
	User       = "tunnel-agent"
	Name       = "tunnel-agent"
	// StateDir is the state directory and the service user's home, the same
	// in the unit (StateDirectory=), the packages and the init scripts.
	StateDir = "/var/lib/tunnel-agent"
	// UnitDir is where `tunnel-agent install` writes the unit.
	UnitDir = "/etc/systemd/system"
)

// Unit is the systemd unit `tunnel-agent install` writes: configs/tunnel-agent.service,
// embedded at build time. It has no template actions and is written verbatim.
var Unit = configs.Unit

// HandInstallHint tells a user without systemd (or with a failing one) how
// to install the agent by hand with what the binary itself carries.
const HandInstallHint = "install it by hand: `tunnel-agent print-unit > /etc/systemd/system/tunnel-agent.service` (systemd), " +
	"`tunnel-agent print-unit --init sysv > /etc/init.d/tunnel-agent` (BusyBox or SysV init), " +
	"`tunnel-agent print-unit --init procd > /etc/init.d/tunnel-agent` (OpenWrt); " +
	"example config: `tunnel-agent example-config > " + ConfigPath + "`"
