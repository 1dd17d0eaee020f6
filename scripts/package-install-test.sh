#!/usr/bin/env bash
# package-install-test.sh OLD.deb NEW.deb: install OLD on this machine, check the user,
# directories and permissions, edit the config, upgrade to NEW, check the edit survived,
# then purge and check nothing is left. Needs root and dpkg; called by
# `scripts/package.sh --install-test` (CI). Leaves the machine as it found it.
set -euo pipefail

old=$1
new=$2
NAME=tunnel-agent

die() { echo "package-install-test: FAIL: $*" >&2; exit 1; }
ok() { echo "package-install-test: ok: $*"; }

[ "$(id -u)" = 0 ] || die "needs root (it runs dpkg -i); run it in CI or a throwaway machine"
if dpkg-query -W -f='${Status}' "$NAME" 2>/dev/null | grep -q ' installed$'; then
	[ "${CI:-}" = true ] || die "$NAME is already installed here; purge it first (dpkg --purge $NAME)"
	echo "package-install-test: purging a $NAME left by an earlier run"
	dpkg --purge "$NAME" >/dev/null
fi

user_existed=0
if getent passwd "$NAME" >/dev/null; then user_existed=1; fi

cleanup() {
	dpkg --purge "$NAME" >/dev/null 2>&1 || true
	if [ "$user_existed" = 0 ]; then
		userdel "$NAME" >/dev/null 2>&1 || true
		groupdel "$NAME" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT

# expect_stat <path> <mode owner:group>
expect_stat() {
	local got
	got=$(stat -c '%a %U:%G' "$1") || die "$1 does not exist"
	[ "$got" = "$2" ] || die "$1 is $got, want $2"
	ok "$1 is $2"
}

dpkg -i "$old" </dev/null || die "dpkg -i $old"
getent passwd "$NAME" | grep -q ":/var/lib/$NAME:" || die "user $NAME missing or has the wrong home"
ok "system user $NAME exists"
expect_stat /var/lib/$NAME "700 $NAME:$NAME"
expect_stat /etc/$NAME "750 root:$NAME"
expect_stat /etc/$NAME/config.yaml "640 root:$NAME"
expect_stat /usr/bin/$NAME "755 root:root"
expect_stat /lib/systemd/system/$NAME.service "644 root:root"
/usr/bin/$NAME version || die "/usr/bin/$NAME version failed"
ok "$NAME version runs"
if command -v systemd-analyze >/dev/null 2>&1; then
	systemd-analyze verify /lib/systemd/system/$NAME.service 2>&1 | sed 's/^/systemd-analyze: /' || true
fi

echo "# edited by the operator" >>/etc/$NAME/config.yaml
touch /var/lib/$NAME/state-marker
dpkg -i "$new" </dev/null || die "dpkg -i $new (upgrade)"
[ "$(dpkg-query -W -f='${Version}' "$NAME")" = "$(dpkg-deb -f "$new" Version)" ] || die "upgrade did not install $new"
grep -qx '# edited by the operator' /etc/$NAME/config.yaml || die "upgrade replaced the edited /etc/$NAME/config.yaml"
ok "upgrade kept the edited config"
[ -e /var/lib/$NAME/state-marker ] || die "upgrade lost /var/lib/$NAME contents"
ok "upgrade kept the state directory"

dpkg --purge "$NAME" </dev/null || die "dpkg --purge $NAME"
for p in /usr/bin/$NAME /lib/systemd/system/$NAME.service /etc/$NAME /var/lib/$NAME; do
	[ ! -e "$p" ] || die "$p is still there after purge"
done
ok "purge removed the binary, unit, config and state"
