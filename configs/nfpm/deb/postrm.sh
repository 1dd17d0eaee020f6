#!/bin/sh
# postrm: on purge, delete the state directory (dpkg removes the conffile).
# The system user stays, as Debian policy asks: files it owned may remain.
set -e

NAME=tunnel-agent

case "$1" in
purge)
	rm -rf /var/lib/tunnel-agent
	rmdir /etc/tunnel-agent 2>/dev/null || true
	;;
remove) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = purge ] && command -v deb-systemd-helper >/dev/null 2>&1; then
	deb-systemd-helper purge "$NAME.service" >/dev/null || true
fi
