#!/bin/sh
# prerm: stop (and disable) the service before its files are removed. An
# upgrade keeps it running; postinst restarts it with the new binary.
set -e

NAME=tunnel-agent

case "$1" in
remove | deconfigure) ;;
*) exit 0 ;;
esac

# deb-systemd-invoke and deb-systemd-helper come with init-system-helpers.
if [ -d /run/systemd/system ] && command -v deb-systemd-invoke >/dev/null 2>&1; then
	deb-systemd-invoke stop "$NAME.service" >/dev/null || true
fi
if command -v deb-systemd-helper >/dev/null 2>&1; then
	deb-systemd-helper disable "$NAME.service" >/dev/null || true
fi
