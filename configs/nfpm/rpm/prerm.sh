#!/bin/sh
# %preun (RPM): on erase ($1 = 0) stop and disable the service; an upgrade
# ($1 = 1) keeps it running and %post restarts it.
[ "${1:-0}" = 0 ] || exit 0
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now tunnel-agent.service >/dev/null 2>&1 || :
fi
exit 0
