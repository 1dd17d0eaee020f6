#!/bin/sh
# prerm (OpenWrt, BusyBox ash): stop and disable the service before its files
# are removed.
[ -n "${IPKG_INSTROOT:-}" ] && exit 0
if [ -x /etc/init.d/tunnel-agent ]; then
	/etc/init.d/tunnel-agent stop >/dev/null 2>&1
	/etc/init.d/tunnel-agent disable >/dev/null 2>&1
fi
exit 0
