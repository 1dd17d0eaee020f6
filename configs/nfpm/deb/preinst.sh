#!/bin/sh
# preinst: create the tunnel-agent system user and group before the files are
# unpacked (the service runs as this user; its home is the state directory,
# /var/lib/tunnel-agent, the same in every package, init script and `install`).
set -e

NAME=tunnel-agent
STATE_DIR=/var/lib/tunnel-agent

case "$1" in
install | upgrade) ;;
*) exit 0 ;;
esac

# useradd and groupadd come with passwd (priority required on Debian and Ubuntu).
getent group "$NAME" >/dev/null || groupadd --system "$NAME"
if ! getent passwd "$NAME" >/dev/null; then
	useradd --system --gid "$NAME" --no-create-home --home-dir "$STATE_DIR" \
		--shell /usr/sbin/nologin --comment "AWS IoT Secure Tunneling agent" "$NAME"
fi
