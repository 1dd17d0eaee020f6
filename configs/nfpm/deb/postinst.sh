#!/bin/sh
# postinst: own the state and config directories, reload systemd. The service
# is never enabled or started here: it needs a config and certificates first.
set -e

NAME=tunnel-agent
STATE_DIR=/var/lib/tunnel-agent
CONF_DIR=/etc/tunnel-agent

case "$1" in
configure) ;;
*) exit 0 ;;
esac
previous=$2

install -d -m 0700 -o "$NAME" -g "$NAME" "$STATE_DIR"
if [ -z "$previous" ]; then
	# First install only: an operator's later choices are left alone.
	chown "root:$NAME" "$CONF_DIR"
	chmod 0750 "$CONF_DIR"
	if [ -f "$CONF_DIR/config.yaml" ]; then
		chown "root:$NAME" "$CONF_DIR/config.yaml"
		chmod 0640 "$CONF_DIR/config.yaml"
	fi
fi

if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
	if [ -n "$previous" ] && command -v deb-systemd-invoke >/dev/null 2>&1; then
		# Upgrade: restart only if it was running.
		deb-systemd-invoke try-restart "$NAME.service" >/dev/null || true
	fi
fi

if [ -z "$previous" ]; then
	cat <<HINT
tunnel-agent is installed but not enabled. Next:
  1. put the device certificate, key and Amazon root CA in $CONF_DIR/
     (chown root:$NAME, chmod 0640)
  2. edit $CONF_DIR/config.yaml and check it:
     tunnel-agent check-config --config $CONF_DIR/config.yaml
  3. sudo systemctl enable --now $NAME
HINT
fi
