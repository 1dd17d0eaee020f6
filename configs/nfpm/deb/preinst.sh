#!/bin/sh
# preinst: create the tunnel-agent system user and group before the files are
# unpacked (the service runs as this user; its home is the state directory).
set -e

NAME=tunnel-agent
STATE_DIR=/var/lib/tunnel-agent

case "$1" in
install | upgrade) ;;
*) exit 0 ;;
esac

if getent passwd "$NAME" >/dev/null; then
	exit 0
fi
if command -v adduser >/dev/null 2>&1 && adduser --help 2>&1 | grep -q -- '--system'; then
	if getent group "$NAME" >/dev/null; then
		group_opt="--ingroup $NAME"
	else
		group_opt="--group"
	fi
	# shellcheck disable=SC2086 # group_opt is two words on purpose
	adduser --quiet --system $group_opt --no-create-home --home "$STATE_DIR" \
		--gecos "AWS IoT Secure Tunneling agent" "$NAME"
else
	getent group "$NAME" >/dev/null || groupadd --system "$NAME"
	useradd --system --gid "$NAME" --no-create-home --home-dir "$STATE_DIR" \
		--shell /usr/sbin/nologin --comment "AWS IoT Secure Tunneling agent" "$NAME"
fi
