#!/bin/sh
# postinst (OpenWrt): the service is not enabled until it is configured.
[ -n "$IPKG_INSTROOT" ] && exit 0
echo "tunnel-agent: edit /etc/tunnel-agent/config.yaml, then: /etc/init.d/tunnel-agent enable && /etc/init.d/tunnel-agent start"
exit 0
