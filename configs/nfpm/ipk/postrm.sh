#!/bin/sh
# postrm (OpenWrt, BusyBox ash): remove the state directory (resumable tunnels'
# client tokens). opkg keeps an edited /etc/tunnel-agent/config.yaml (a
# conffile); the user stays, as files it owned may remain.
rm -rf "${IPKG_INSTROOT:-}/var/lib/tunnel-agent"
rmdir "${IPKG_INSTROOT:-}/etc/tunnel-agent" 2>/dev/null
exit 0
