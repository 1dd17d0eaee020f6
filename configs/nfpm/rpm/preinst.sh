#!/bin/sh
# %pre (RPM: Fedora, Amazon Linux, RHEL-like): create the tunnel-agent system
# group and user (home /var/lib/tunnel-agent, no login shell) before the files
# are unpacked. $1 is 1 on install, 2 on upgrade; both need the user.
NAME=tunnel-agent
HOME_DIR=/var/lib/tunnel-agent

has() { grep -q "^$NAME:" "$1" 2>/dev/null; }

nologin=/sbin/nologin
[ -x /usr/sbin/nologin ] && nologin=/usr/sbin/nologin

if command -v useradd >/dev/null 2>&1; then
	has /etc/group || groupadd -r "$NAME" || exit 1
	has /etc/passwd || useradd -r -g "$NAME" -M -d "$HOME_DIR" -s "$nologin" \
		-c "AWS IoT Secure Tunneling agent" "$NAME" || exit 1
elif command -v adduser >/dev/null 2>&1 && command -v addgroup >/dev/null 2>&1; then
	# BusyBox-based images.
	has /etc/group || addgroup -S "$NAME" || exit 1
	has /etc/passwd || adduser -S -D -H -h "$HOME_DIR" -s /bin/false -G "$NAME" "$NAME" || exit 1
else
	echo "tunnel-agent %pre: cannot create the $NAME user: neither useradd (shadow-utils) nor BusyBox adduser exists; install shadow-utils" >&2
	exit 1
fi
exit 0
