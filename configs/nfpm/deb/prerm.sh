#!/bin/sh
# prerm: stop (and disable) the service before its files are removed. An
# upgrade keeps it running; postinst restarts it with the new binary.
set -e

NAME=tunnel-agent

case "$1" in
remove | deconfigure) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl stop "$NAME.service" >/dev/null 2>&1 || true
fi
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable "$NAME.service" >/dev/null 2>&1 || true
fi
