#!/bin/sh
# %postun (RPM): on erase ($1 = 0) delete the state directory (resumable
# tunnels' client tokens) and reload systemd. An edited config is kept as
# /etc/tunnel-agent/config.yaml.rpmsave by rpm; the user stays.
[ "${1:-0}" = 0 ] || exit 0
rm -rf /var/lib/tunnel-agent
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
