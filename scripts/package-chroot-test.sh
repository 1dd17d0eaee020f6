#!/usr/bin/env bash
# package-chroot-test.sh [--ipk IPK --host-bin HOST_BINARY] [--rpm RPM]
#
# --ipk: install an OpenWrt .ipk (mipsle) into
# BusyBox-only roots (Debian's busybox-static in a chroot: no bash, no coreutils, no
# useradd, no opkg, no procd) and run its maintainer scripts there with BusyBox's sh;
# run the mipsle binary under qemu-mipsel-static in that root as the service user to
# check-config; then drive configs/init.d/tunnel-agent (the SysV/BusyBox init script)
# in the same root with HOST_BINARY: start, status, reload, restart, stop, with
# BusyBox's start-stop-daemon and syslogd. Needs root, busybox-static, qemu-user-static
# and openssl; called by `scripts/package.sh --chroot-test` (CI). Prints one "ok:" line
# per check and cleans up after itself.
#
# --rpm: install a host-architecture .rpm with the real rpm (rpm --root) into a BusyBox
# root that also holds the host's useradd/groupadd (shadow-utils, as on Fedora or
# Amazon Linux): %pre creates the user, %post sets the modes, rpm -V verifies, the
# binary runs, rpm -e runs %preun/%postun. systemd is absent there: the scriptlets'
# systemctl calls are skipped as on a system booted without it.
#
# What a real OpenWrt device adds that this root does not: opkg itself (conffile
# handling, the package database), procd and ubus (the procd init script cannot run
# here; `sh -n` and the .ipk checks cover it), and OpenWrt's /lib/functions.sh, for
# which the test installs a stand-in with the same user_add/group_add_next interface
# (Debian's busybox has no adduser/addgroup applets, so that path is covered by the
# "neither exists" failure here). README "OpenWrt" says how to check those by hand.
set -euo pipefail

ipk=
host_bin=
rpm_file=
while [ $# -gt 0 ]; do
	case "$1" in
	--ipk) ipk=$2; shift ;;
	--host-bin) host_bin=$2; shift ;;
	--rpm) rpm_file=$2; shift ;;
	*) echo "package-chroot-test: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
BUSYBOX=${BUSYBOX:-/bin/busybox}
NAME=tunnel-agent

die() { echo "package-chroot-test: FAIL: $*" >&2; exit 1; }
ok() { echo "package-chroot-test: ok: $*"; }

[ "$(id -u)" = 0 ] || die "needs root (chroot, mount -t proc)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX is missing: apt-get install busybox-static"
"$BUSYBOX" --list | grep -qx start-stop-daemon || die "$BUSYBOX has no start-stop-daemon applet"
if [ -n "$ipk" ]; then
	QEMU=$(command -v qemu-mipsel-static) || die "qemu-mipsel-static is missing: apt-get install qemu-user-static"
	command -v openssl >/dev/null || die "openssl is missing"
	[ -f "$ipk" ] || die "no $ipk"
	[ -x "$host_bin" ] || die "no --host-bin $host_bin"
fi
if [ -n "$rpm_file" ]; then
	command -v rpm >/dev/null || die "rpm is missing: apt-get install rpm"
	[ -f "$rpm_file" ] || die "no $rpm_file"
fi

WORK=$(mktemp -d)
MOUNTS=()
cleanup() {
	local m pidfile
	for pidfile in "$WORK"/*/var/run/tunnel-agent.pid "$WORK"/*/var/run/syslogd.pid; do
		[ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
	done
	for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

# new_root DIR: a root holding only BusyBox (its applets as symlinks), root's
# passwd/group entries and /dev/null.
new_root() {
	local r=$1
	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,lib,etc/init.d,etc/default,tmp,var/run,var/lib,var/log,dev,proc,root}
	chmod 1777 "$r/tmp"
	cp "$BUSYBOX" "$r/bin/busybox"
	chroot "$r" /bin/busybox --install -s
	echo 'root:x:0:0:root:/root:/bin/sh' >"$r/etc/passwd"
	echo 'root:x:0:' >"$r/etc/group"
	mknod -m 666 "$r/dev/null" c 1 3
	[ ! -e "$r/bin/bash" ] && [ ! -e "$r/usr/sbin/useradd" ] || die "$r is not BusyBox-only"
}

# in_root DIR CMD...: run CMD in the chroot with BusyBox's shell environment.
in_root() {
	local r=$1
	shift
	chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"
}

# openwrt_functions DIR: a stand-in for OpenWrt's /lib/functions.sh user helpers, with
# base-files' interface: group_add_next NAME prints the gid (existing or new);
# user_add NAME [UID] GID DESC HOME SHELL appends to /etc/passwd; both honour
# $IPKG_INSTROOT.
openwrt_functions() {
	cat >"$1/lib/functions.sh" <<'EOF'
# Stand-in for OpenWrt base-files' /lib/functions.sh (user helpers only).
group_exists() { grep -qs "^${1}:" ${IPKG_INSTROOT}/etc/group; }
user_exists() { grep -qs "^${1}:" ${IPKG_INSTROOT}/etc/passwd; }
group_add() { echo "${1}:x:${2}:" >>${IPKG_INSTROOT}/etc/group; }
group_add_next() {
	local gid gids
	gid=$(grep -s "^${1}:" ${IPKG_INSTROOT}/etc/group | cut -d: -f3)
	if [ -n "$gid" ]; then echo $gid; return; fi
	gids=$(cut -d: -f3 ${IPKG_INSTROOT}/etc/group)
	gid=65536
	while echo "$gids" | grep -q "^$gid$"; do gid=$((gid + 1)); done
	group_add $1 $gid
	echo $gid
}
user_add() {
	local name="${1}" uid="${2}" gid="${3}" desc="${4:-$1}" home="${5:-/var/run/$1}" shell="${6:-/bin/false}"
	[ -z "$uid" ] && {
		uids=$(cut -d: -f3 ${IPKG_INSTROOT}/etc/passwd)
		uid=65536
		while echo "$uids" | grep -q "^$uid$"; do uid=$((uid + 1)); done
	}
	[ -z "$gid" ] && gid=$uid
	echo "${name}:x:${uid}:${gid}:${desc}:${home}:${shell}" >>${IPKG_INSTROOT}/etc/passwd
}
EOF
}

ipk_test() {
# Unpack the .ipk: an ar archive (OpenWrt's opkg-build) or a gzipped tar (nfpm).
mkdir -p "$WORK/ipk/control"
if [ "$(head -c 7 "$ipk" | tr -d '\0')" = '!<arch>' ]; then
	(cd "$WORK/ipk" && ar x "$(realpath "$ipk")")
else
	tar -xzf "$ipk" -C "$WORK/ipk"
fi
tar -xzf "$WORK/ipk/control.tar.gz" -C "$WORK/ipk/control"
version=$(sed -n 's/^Version: //p' "$WORK/ipk/control/control")
ok "unpacked $(basename "$ipk") (Version $version, $(tar -tzf "$WORK/ipk/data.tar.gz" | grep -vc '/$') files)"

# --- 1. No OpenWrt helpers and no adduser applet: a clear failure, nothing changed.
R1=$WORK/bare
new_root "$R1"
cp "$WORK/ipk/control/preinst" "$R1/tmp/preinst"
set +e
out=$(in_root "$R1" /bin/sh /tmp/preinst install 2>&1)
rc=$?
set -e
[ "$rc" = 1 ] || die "preinst without user helpers exited $rc, want 1: $out"
grep -q "neither OpenWrt's /lib/functions.sh" <<<"$out" || die "preinst failure does not say what is missing: $out"
[ "$(cat "$R1/etc/passwd")" = 'root:x:0:0:root:/root:/bin/sh' ] || die "failing preinst changed /etc/passwd"
ok "preinst in a root without user helpers fails with: $out"

# --- 2. Image build (opkg -o / IPKG_INSTROOT): helpers act on the image's files.
R2=$WORK/image
new_root "$R2"
openwrt_functions "$R2"
IPKG_INSTROOT=$R2 "$BUSYBOX" sh "$WORK/ipk/control/preinst" install || die "preinst with IPKG_INSTROOT failed"
grep -q "^$NAME:x:[0-9]*:[0-9]*:.*:/var/lib/$NAME:/bin/false\$" "$R2/etc/passwd" ||
	die "preinst with IPKG_INSTROOT did not add $NAME to the image's /etc/passwd"
ok "preinst with IPKG_INSTROOT=<image> adds the user to the image"

# --- 3. Install, configure, check-config under qemu, init script, remove.
R=$WORK/root
new_root "$R"
openwrt_functions "$R"
for s in preinst postinst prerm postrm; do cp "$WORK/ipk/control/$s" "$R/tmp/$s"; done
in_root "$R" /bin/sh /tmp/preinst install || die "preinst install failed"
in_root "$R" /bin/sh /tmp/preinst upgrade || die "preinst (second run, upgrade) failed"
[ "$(grep -c "^$NAME:" "$R/etc/passwd")" = 1 ] || die "preinst twice: want one $NAME user"
line=$(grep "^$NAME:" "$R/etc/passwd")
uid=$(cut -d: -f3 <<<"$line")
gid=$(cut -d: -f4 <<<"$line")
[ "$(cut -d: -f6,7 <<<"$line")" = "/var/lib/$NAME:/bin/false" ] || die "user $NAME: home/shell are not /var/lib/$NAME, /bin/false: $line"
grep -q "^$NAME:x:$gid:" "$R/etc/group" || die "group $NAME ($gid) missing"
ok "preinst (BusyBox sh, OpenWrt helpers) created $line; a second run is a no-op"

tar -xzf "$WORK/ipk/data.tar.gz" -C "$R" --no-same-owner
in_root "$R" /bin/sh /tmp/postinst configure >"$WORK/postinst.out" 2>&1 || die "postinst failed: $(cat "$WORK/postinst.out")"
grep -q "/etc/init.d/$NAME enable" "$WORK/postinst.out" || die "postinst did not print the next steps"
# expect_stat PATH "MODE USER:GROUP", read with BusyBox's stat inside the root.
expect_stat() {
	local got
	got=$(in_root "$R" stat -c '%a %U:%G' "$1") || die "$1 does not exist"
	[ "$got" = "$2" ] || die "$1 is $got, want $2"
}
expect_stat /var/lib/$NAME "700 $NAME:$NAME"
expect_stat /etc/$NAME "750 root:$NAME"
expect_stat /etc/$NAME/config.yaml "640 root:$NAME"
expect_stat /usr/bin/$NAME "755 root:root"
expect_stat /etc/init.d/$NAME "755 root:root"
ok "postinst: /var/lib/$NAME 0700 $NAME, /etc/$NAME 0750 root:$NAME, config 0640, init script 0755"

cp "$QEMU" "$R/usr/bin/qemu-mipsel-static"
got=$(chroot --userspec="$uid:$gid" "$R" /usr/bin/qemu-mipsel-static /usr/bin/$NAME version) || die "mipsle binary does not run under qemu"
[ "$got" = "$NAME $version" ] || die "binary says '$got', package Version is $version"
ok "mipsle binary under qemu-mipsel-static: '$got' (same version as the package)"

# The example config as installed names certificate files that do not exist yet.
set +e
out=$(chroot --userspec="$uid:$gid" "$R" /usr/bin/qemu-mipsel-static /usr/bin/$NAME check-config --config /etc/$NAME/config.yaml 2>&1)
rc=$?
set -e
[ "$rc" = 1 ] && grep -q 'device.pem.crt' <<<"$out" || die "check-config of the untouched example: rc $rc, want 1 naming the certificate: $out"
ok "check-config of the untouched example config fails naming the missing certificate"

# A real certificate, key and CA, readable by the service user only through its group.
pki=$WORK/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-ca \
	-keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=router-1 \
	-keyout "$pki/key" -out "$pki/csr" 2>/dev/null
openssl x509 -req -in "$pki/csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 2 -out "$pki/cert" 2>/dev/null
install -m 0640 -o 0 -g "$gid" "$pki/cert" "$R/etc/$NAME/device.pem.crt"
install -m 0640 -o 0 -g "$gid" "$pki/key" "$R/etc/$NAME/private.pem.key"
install -m 0640 -o 0 -g "$gid" "$pki/ca.pem" "$R/etc/$NAME/AmazonRootCA1.pem"
# Port 1 on loopback refuses: the agent keeps retrying (with backoff) while the init
# script is tested, as on a device whose network is not up yet.
sed -i -e 's/^thing_name: .*/thing_name: router-1/' -e 's/^endpoint: .*/endpoint: 127.0.0.1/' \
	-e 's/^port: .*/port: 1/' "$R/etc/$NAME/config.yaml"
out=$(chroot --userspec="$uid:$gid" "$R" /usr/bin/qemu-mipsel-static /usr/bin/$NAME check-config --config /etc/$NAME/config.yaml 2>&1) ||
	die "check-config as $NAME under qemu: $out"
grep -q '^# configuration OK' <<<"$out" || die "check-config did not say OK: $out"
ok "check-config as user $NAME (uid $uid) under qemu-mipsel-static: configuration OK"

# The procd script needs procd and ubus, absent here: source it with BusyBox sh and
# stubs that record the procd_* calls, and check what start_service asks procd for.
cat >"$R/tmp/procd-check" <<'EOF'
procd_open_instance() { echo open; }
procd_close_instance() { echo close; }
procd_set_param() { echo "param $*"; }
procd_send_signal() { echo "signal $*"; }
. /etc/init.d/tunnel-agent
start_service && reload_service
EOF
out=$(in_root "$R" /bin/sh /tmp/procd-check) || die "procd script: start_service failed: $out"
for want in "param command /usr/bin/$NAME run --config /etc/$NAME/config.yaml" "param user $NAME" "param group $NAME" \
	"param respawn 3600 5 0" "param file /etc/$NAME/config.yaml" "param reload_signal HUP" "signal $NAME * HUP"; do
	grep -qxF "$want" <<<"$out" || die "procd script: start_service/reload_service lack '$want': $out"
done
ok "procd script (BusyBox sh, procd_* recorded): user/group $NAME, respawn, file + reload_signal HUP, reload sends HUP"

# --- SysV/BusyBox init script, with the host binary (start-stop-daemon execs it).
cp configs/init.d/tunnel-agent "$R/etc/init.d/S95$NAME"
chmod 0755 "$R/etc/init.d/S95$NAME"
install -m 0755 "$host_bin" "$R/usr/local/bin/$NAME"
echo "DAEMON=/usr/local/bin/$NAME" >"$R/etc/default/$NAME"
mount -t proc proc "$R/proc"
MOUNTS+=("$R/proc")
in_root "$R" syslogd -O /var/log/messages || die "BusyBox syslogd does not start"
initd() { in_root "$R" /bin/sh "/etc/init.d/S95$NAME" "$@"; }
agent_pid() { cat "$R/var/run/$NAME.pid" 2>/dev/null; }
# wait_log TEXT: wait (up to 10 s) for TEXT in the root's syslog.
wait_log() {
	local i
	for i in $(seq 100); do
		grep -q "$1" "$R/var/log/messages" 2>/dev/null && return 0
		sleep 0.1
	done
	die "no '$1' in the syslog after 10 s: $(tail -n 5 "$R/var/log/messages" 2>/dev/null)"
}

out=$(initd start) || die "init start failed: $out"
pid=$(agent_pid)
[ -n "$pid" ] && kill -0 "$pid" || die "init start: no live pid in /var/run/$NAME.pid ($out)"
[ "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")" = "$uid" ] || die "the agent (pid $pid) does not run as uid $uid"
wait_log "tunnel-agent starting"
ok "init start: $out, running as uid $uid, logging to syslog through logger"
out=$(initd status) || die "init status of a running agent failed: $out"
ok "init status: $out"
out=$(initd start) && grep -q "already running" <<<"$out" || die "second start: $out"
ok "init start again: $out"

if grep -qa 'reloading the configuration' "$host_bin"; then
	out=$(initd reload) || die "init reload failed: $out"
	wait_log "reloading the configuration"
	kill -0 "$pid" 2>/dev/null || die "the agent exited on reload (SIGHUP)"
	ok "init reload: $out (SIGHUP; same pid $pid, the agent logged the reload)"
else
	echo "package-chroot-test: NOTE: this binary does not handle SIGHUP yet: reload not exercised"
fi

out=$(initd restart) || die "init restart failed: $out"
newpid=$(agent_pid)
[ -n "$newpid" ] && [ "$newpid" != "$pid" ] && kill -0 "$newpid" || die "restart: want a new live pid, have '$newpid' (was $pid)"
! kill -0 "$pid" 2>/dev/null || die "restart left the old agent $pid running"
ok "init restart: pid $pid -> $newpid"

out=$(initd stop) || die "init stop failed: $out"
! kill -0 "$newpid" 2>/dev/null || die "stop left the agent $newpid running"
[ ! -e "$R/var/run/$NAME.pid" ] || die "stop left the pid file"
wait_log "shutting down"
set +e
out=$(initd status)
rc=$?
set -e
[ "$rc" = 3 ] || die "status of a stopped agent: rc $rc, want 3 ($out)"
ok "init stop: the agent shut down (SIGTERM), pid file removed; status exits 3: $out"

echo "bogus_key: 1" >>"$R/etc/$NAME/config.yaml"
set +e
out=$(initd start 2>&1)
rc=$?
set -e
[ "$rc" != 0 ] && grep -q "not valid" <<<"$out" && [ ! -e "$R/var/run/$NAME.pid" ] ||
	die "start with a broken config: rc $rc, want a failure naming it: $out"
ok "init start with an unknown config key fails before starting: $(tail -n 1 <<<"$out")"
sed -i '/^bogus_key/d' "$R/etc/$NAME/config.yaml"

# --- Remove: prerm, the package's files, postrm.
in_root "$R" /bin/sh /tmp/prerm remove || die "prerm failed"
tar -tzf "$WORK/ipk/data.tar.gz" | grep -v '/$' | grep -v "^./etc/$NAME/config.yaml\$" |
	while read -r f; do rm -f "$R/${f#./}"; done
in_root "$R" /bin/sh /tmp/postrm remove || die "postrm failed"
[ ! -e "$R/var/lib/$NAME" ] || die "postrm left /var/lib/$NAME"
[ -e "$R/etc/$NAME/config.yaml" ] || die "the conffile went away"
ok "prerm/postrm: state directory removed, the edited config kept"
}

# add_host_program ROOT PATH: copy a host program and the shared libraries it needs.
add_host_program() {
	local r=$1 p=$2 lib
	cp "$p" "$r$p"
	for lib in $(ldd "$p" | grep -o '/[^ ]*'); do
		mkdir -p "$r$(dirname "$lib")"
		cp -L "$lib" "$r$lib"
	done
}

rpm_test() {
	local R=$WORK/rpm-root out line
	new_root "$R"
	add_host_program "$R" "$(command -v useradd)"
	add_host_program "$R" "$(command -v groupadd)"
	[ -f /etc/login.defs ] && cp /etc/login.defs "$R/etc/"
	rpm --root "$R" --initdb 2>/dev/null || die "rpm --initdb"
	out=$(rpm --root "$R" -i --nodeps "$rpm_file" 2>&1 | grep -v -e 'use Alien instead' -e 'assuming you know what') ||
		die "rpm -i failed: $out"
	grep -q "systemctl enable --now $NAME" <<<"$out" || die "%post did not print the next steps: $out"
	line=$(grep "^$NAME:" "$R/etc/passwd") || die "%pre did not create the user"
	[ "$(cut -d: -f6 <<<"$line")" = /var/lib/$NAME ] || die "user home is not /var/lib/$NAME: $line"
	ok "rpm -i (BusyBox sh scriptlets, shadow-utils useradd): created $line"
	out=$(rpm --root "$R" -V "$NAME" 2>&1 | grep -v -e 'use Alien instead' -e 'assuming you know what') &&
		die "rpm -V reports changes after install: $out"
	ok "rpm -V: every file, mode and owner as packaged"
	out=$(in_root "$R" stat -c '%a %U:%G' /var/lib/$NAME /etc/$NAME /etc/$NAME/config.yaml | tr '\n' ' ')
	[ "$out" = "700 $NAME:$NAME 750 root:$NAME 640 root:$NAME " ] || die "modes after %post: $out"
	ok "modes: /var/lib/$NAME 0700 $NAME, /etc/$NAME 0750 root:$NAME, config 0640 root:$NAME"
	case "$(uname -m)" in
	"$(rpm -qp --qf '%{ARCH}' "$rpm_file" 2>/dev/null)")
		out=$(in_root "$R" /usr/bin/$NAME version) || die "/usr/bin/$NAME version"
		ok "installed binary: $out (package $(rpm --root "$R" -q "$NAME" 2>/dev/null))"
		;;
	esac
	rpm --root "$R" -e "$NAME" 2>&1 | grep -v -e 'use Alien instead' -e 'assuming you know what' || true
	! rpm --root "$R" -q "$NAME" >/dev/null 2>&1 || die "rpm -e did not remove $NAME"
	[ ! -e "$R/var/lib/$NAME" ] && [ ! -e "$R/usr/bin/$NAME" ] || die "rpm -e left files behind"
	ok "rpm -e (%preun, %postun): binary and state directory removed"
}

[ -n "$ipk" ] || [ -n "$rpm_file" ] || die "nothing to test: give --ipk IPK --host-bin BIN and/or --rpm RPM"
if [ -n "$ipk" ]; then ipk_test; fi
if [ -n "$rpm_file" ]; then rpm_test; fi
