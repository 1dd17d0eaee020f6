#!/bin/sh
# preinst (OpenWrt, BusyBox ash): create the tunnel-agent system group and user
# (home /var/lib/tunnel-agent, no login shell) before the files are unpacked.
# Uses OpenWrt's own helpers from /lib/functions.sh when it provides them (they
# also work when opkg installs into an image root, $IPKG_INSTROOT), else
# BusyBox's addgroup/adduser applets, and fails with a clear message otherwise.

NAME=tunnel-agent
HOME_DIR=/var/lib/tunnel-agent
ROOT=${IPKG_INSTROOT:-}

fail() {
	echo "tunnel-agent preinst: $*" >&2
	exit 1
}

has_user() { grep -q "^$NAME:" "$ROOT/etc/passwd" 2>/dev/null; }
has_group() { grep -q "^$NAME:" "$ROOT/etc/group" 2>/dev/null; }

with_openwrt_helpers() {
	# group_add_next prints the gid (OpenWrt 19.07 and later) or, in older
	# releases, returns it as its exit status: read it back from /etc/group.
	group_add_next "$NAME" >/dev/null
	gid=$(grep "^$NAME:" "$ROOT/etc/group" | cut -d: -f3)
	[ -n "$gid" ] || fail "group_add_next $NAME did not add the group to $ROOT/etc/group"
	has_user || user_add "$NAME" "" "$gid" "AWS IoT Secure Tunneling agent" "$HOME_DIR" /bin/false ||
		fail "user_add $NAME failed"
}

with_busybox() {
	has_group || addgroup -S "$NAME" || fail "addgroup -S $NAME failed"
	has_user || adduser -S -D -H -h "$HOME_DIR" -s /bin/false -G "$NAME" -g "AWS IoT Secure Tunneling agent" "$NAME" ||
		fail "adduser -S $NAME failed"
}

has_user && has_group && exit 0

if [ -r "$ROOT/lib/functions.sh" ]; then
	# shellcheck disable=SC1091 # OpenWrt's base-files
	. "$ROOT/lib/functions.sh"
fi
if command -v user_add >/dev/null 2>&1 && command -v group_add_next >/dev/null 2>&1; then
	with_openwrt_helpers
elif [ -z "$ROOT" ] && command -v adduser >/dev/null 2>&1 && command -v addgroup >/dev/null 2>&1; then
	with_busybox
else
	fail "cannot create the $NAME user: neither OpenWrt's /lib/functions.sh (user_add, group_add_next) nor BusyBox addgroup/adduser is available; add '$NAME:x:<gid>:' to /etc/group and '$NAME:x:<uid>:<gid>::$HOME_DIR:/bin/false' to /etc/passwd, then install again"
fi
has_user || fail "the $NAME user is still missing from $ROOT/etc/passwd after creating it"
exit 0
