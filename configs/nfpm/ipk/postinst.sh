#!/bin/sh
# postinst (OpenWrt, BusyBox ash): give the config directory to the service
# user's group and the state directory to the user. The service is not enabled
# or started: it needs a configuration and certificates first.

NAME=tunnel-agent
ROOT=${IPKG_INSTROOT:-}

mkdir -p "$ROOT/var/lib/$NAME"
chown "$NAME:$NAME" "$ROOT/var/lib/$NAME" 2>/dev/null
chmod 0700 "$ROOT/var/lib/$NAME"
chown "root:$NAME" "$ROOT/etc/$NAME" "$ROOT/etc/$NAME/config.yaml" 2>/dev/null
chmod 0750 "$ROOT/etc/$NAME"
chmod 0640 "$ROOT/etc/$NAME/config.yaml"

[ -n "$ROOT" ] && exit 0
# An upgrade keeps a running agent running, with the new binary.
if /etc/init.d/$NAME running >/dev/null 2>&1; then
	/etc/init.d/$NAME restart
	exit 0
fi
cat <<HINT
tunnel-agent is installed but not enabled. Next:
  1. copy the device certificate, key and Amazon root CA to /etc/$NAME/
     (chown root:$NAME, chmod 0640)
  2. edit /etc/$NAME/config.yaml and check it:
     tunnel-agent check-config --config /etc/$NAME/config.yaml
  3. /etc/init.d/$NAME enable && /etc/init.d/$NAME start
HINT
exit 0
