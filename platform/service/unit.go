package service

// Paths the unit file refers to.
const (
	ExecPath   = "/usr/local/bin/tunnel-agent"
	ConfigPath = "/etc/tunnel-agent/config.yaml"
	User       = "tunnel-agent"
	Name       = "tunnel-agent"
)

// Unit is the systemd unit "tunnel-agent install" writes. It is kept
// byte-identical to configs/tunnel-agent.service (a test checks it) and has
// no template actions, so kardianos/service writes it verbatim.
const Unit = `# tunnel-agent: AWS IoT Secure Tunneling device agent.
# Written by "tunnel-agent install"; keep identical to platform/service/unit.go.
[Unit]
Description=AWS IoT Secure Tunneling device agent
Documentation=https://github.com/tunnel-agent/tunnel-agent
After=network-online.target
Wants=network-online.target
# Keep restarting however often it fails (the default gives up after 5 starts in 10 s).
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess=main
ExecStart=/usr/local/bin/tunnel-agent run --config /etc/tunnel-agent/config.yaml
User=tunnel-agent
Group=tunnel-agent
# READY=1 comes once the configuration is loaded (the broker is reached in
# the background), so starting never waits for the network; STATUS= shows
# the MQTT connection state. The event loop pings the watchdog; a wedged
# agent is restarted. Restart=always: no exit or signal leaves the device
# unreachable. SIGHUP reloads the configuration without dropping tunnels.
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=5s
TimeoutStartSec=30s
WatchdogSec=30s
TimeoutStopSec=10s
KillMode=mixed
KillSignal=SIGTERM
StateDirectory=tunnel-agent
StateDirectoryMode=0700
# The control socket of "tunnel-agent status" (control.sock, mode 0660):
# members of the tunnel-agent group may read the status.
RuntimeDirectory=tunnel-agent
RuntimeDirectoryMode=0750
ConfigurationDirectory=tunnel-agent
ConfigurationDirectoryMode=0750
UMask=0077

# Hardening: the agent only needs the network, its state directory and
# read access to its configuration and certificates.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
ProtectHostname=yes
ProtectClock=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
DevicePolicy=closed
KeyringMode=private
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
`
