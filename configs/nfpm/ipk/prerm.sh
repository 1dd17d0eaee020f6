#!/bin/sh
# prerm (OpenWrt): stop and disable the service before removal.
[ -n "$IPKG_INSTROOT" ] && exit 0
/etc/init.d/tunnel-agent stop 2>/dev/null || true
/etc/init.d/tunnel-agent disable 2>/dev/null || true
exit 0
