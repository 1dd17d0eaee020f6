#!/bin/sh
# %post (RPM): own the state and config directories, reload systemd, restart a
# running agent on upgrade. The service is never enabled here: it needs a
# config and certificates first. $1 is 1 on install, 2 or more on upgrade.
NAME=tunnel-agent

mkdir -p /var/lib/$NAME
chown "$NAME:$NAME" /var/lib/$NAME
chmod 0700 /var/lib/$NAME
if [ "${1:-1}" = 1 ]; then
	chown "root:$NAME" /etc/$NAME /etc/$NAME/config.yaml
	chmod 0750 /etc/$NAME
	chmod 0640 /etc/$NAME/config.yaml
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
	if [ "${1:-1}" -ge 2 ]; then
		systemctl try-restart $NAME.service >/dev/null 2>&1 || :
	fi
fi
if [ "${1:-1}" = 1 ]; then
	cat <<HINT
tunnel-agent is installed but not enabled. Next:
  1. put the device certificate, key and Amazon root CA in /etc/$NAME/
     (chown root:$NAME, chmod 0640)
  2. edit /etc/$NAME/config.yaml and check it:
     tunnel-agent check-config --config /etc/$NAME/config.yaml
  3. sudo systemctl enable --now $NAME
HINT
fi
exit 0
