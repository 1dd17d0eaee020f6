// Package configs embeds the files a device needs besides the binary (the
// systemd unit, the SysV/BusyBox and OpenWrt procd init scripts, the example
// configuration), so that `tunnel-agent print-unit` and `tunnel-agent
// example-config` print exactly what this directory holds: a release user
// who has only the binary can still install it by hand.
package configs

import _ "embed"

// Unit is tunnel-agent.service, the systemd unit `tunnel-agent install` writes
// (ExecStart=/usr/local/bin/tunnel-agent; the packages rewrite it to /usr/bin).
//
//go:embed tunnel-agent.service
var Unit string

// ExampleConfig is tunnel-agent.yaml, the commented example configuration.
//
//go:embed tunnel-agent.yaml
var ExampleConfig string

// SysVInit is init.d/tunnel-agent, the init script for BusyBox init and
// SysV init (Buildroot, Yocto without systemd).
//
//go:embed init.d/tunnel-agent
var SysVInit string

// ProcdInit is openwrt/tunnel-agent.init, the OpenWrt procd init script.
//
//go:embed openwrt/tunnel-agent.init
var ProcdInit string
