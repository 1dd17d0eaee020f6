#!/usr/bin/env bash
# package.sh: build tunnel-agent packages with nfpm into dist/packages/.
#
#   scripts/package.sh                 .deb for armhf, arm64, amd64 and .ipk for OpenWrt
#   scripts/package.sh --deb amd64     only the named .deb architecture(s) (repeatable)
#   scripts/package.sh --no-ipk        skip the OpenWrt packages
#   scripts/package.sh --install-test  also install, upgrade and purge the host .deb on
#                                      this machine (root only; used by CI)
#
# nfpm is installed with `go install` into $TOOLS_DIR (default ~/.cache/tunnel-agent-tools)
# when missing. The armhf .deb carries a GOARM=6 binary: it runs on every Raspberry Pi
# (Raspberry Pi OS armhf is ARMv6) and on Debian armhf (ARMv7).
# Environment: VERSION (binary stamp), PKG_VERSION (package version, default derived from
# git), IPK_ARCHES (goarch:opkg-arch pairs, default below).
set -euo pipefail

cd "$(dirname "$0")/.."
# v2.46 and later need modules the Go module proxy does not serve here.
NFPM_VERSION=v2.45.0
TOOLS_DIR=${TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tunnel-agent-tools}
NFPM="$TOOLS_DIR/nfpm-$NFPM_VERSION/nfpm"
OUT=dist
PKG_OUT=$OUT/packages
CONFIG=configs/nfpm/tunnel-agent.yaml
UNIT=$OUT/pkg/tunnel-agent.service
DEB_ARCHES=()
IPK=1
INSTALL_TEST=0
# OpenWrt opkg only installs packages whose arch its target lists; these are the
# most common router/SBC targets. Override for others (e.g. arm:arm_arm1176jzf-s_vfp).
IPK_ARCHES=${IPK_ARCHES:-"mipsle:mipsel_24kc mips:mips_24kc arm:arm_cortex-a7_neon-vfpv4 arm64:aarch64_cortex-a53"}

while [ $# -gt 0 ]; do
	case "$1" in
	--deb) DEB_ARCHES+=("$2"); shift ;;
	--no-ipk) IPK=0 ;;
	--install-test) INSTALL_TEST=1 ;;
	-h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ ${#DEB_ARCHES[@]} -gt 0 ] || DEB_ARCHES=(armhf arm64 amd64)

die() { echo "package.sh: FAIL: $*" >&2; exit 1; }

for f in cmd/tunnel-agent/main.go configs/tunnel-agent.service configs/tunnel-agent.yaml "$CONFIG"; do
	[ -e "$f" ] || die "$f is missing; it is needed to build the package"
done

ensure_nfpm() {
	[ -x "$NFPM" ] && return 0
	echo "package.sh: installing nfpm $NFPM_VERSION into $TOOLS_DIR"
	mkdir -p "$(dirname "$NFPM")"
	GOBIN="$(cd "$(dirname "$NFPM")" && pwd)" GOFLAGS=-mod=mod CGO_ENABLED=0 \
		go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" ||
		die "go install nfpm@$NFPM_VERSION (needs the Go module proxy)"
}

# pkg_version prints a Debian-valid version: 1.2.3 on a tag v1.2.3, else
# <last tag or 0.0.0>+git<commit count>.<short hash>, which sorts upwards along main.
pkg_version() {
	local tag count hash
	if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
		echo "${tag#v}"
		return
	fi
	tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || echo v0.0.0)
	count=$(git rev-list --count HEAD 2>/dev/null || echo 0)
	hash=$(git rev-parse --short=8 HEAD 2>/dev/null || echo unknown)
	echo "${tag#v}+git$count.$hash"
}

goarch_of_deb() {
	case "$1" in
	armhf) echo arm ;;
	arm64 | amd64) echo "$1" ;;
	*) die "unsupported .deb architecture $1 (armhf, arm64, amd64)" ;;
	esac
}

# nfpm_pkg <packager> <pkg-arch> <goarch> <version> <target file>
nfpm_pkg() {
	PKG_ARCH=$2 PKG_BIN="$OUT/linux_$3/tunnel-agent" PKG_VERSION=$4 PKG_UNIT=$UNIT \
		"$NFPM" package --config "$CONFIG" --packager "$1" --target "$5" >/dev/null ||
		die "nfpm $1 $2"
	echo "built $5"
}

# packaged_unit writes the systemd unit with the binary at /usr/bin, where the package
# puts it (`tunnel-agent install` copies the binary to /usr/local/bin instead).
packaged_unit() {
	mkdir -p "$(dirname "$UNIT")"
	sed 's#/usr/local/bin/tunnel-agent#/usr/bin/tunnel-agent#g' configs/tunnel-agent.service >"$UNIT"
	grep -q '^ExecStart=/usr/bin/tunnel-agent ' "$UNIT" ||
		die "configs/tunnel-agent.service: ExecStart does not run /usr/local/bin/tunnel-agent or /usr/bin/tunnel-agent"
}

# elf_machine prints the ELF e_machine of a binary read from stdin (ARM=40, AArch64=183, x86-64=62).
elf_machine() {
	# Drain the rest so the writer does not die of SIGPIPE.
	{ od -An -tu2 -j18 -N2; cat >/dev/null; } | tr -d ' '
}

# verify_deb <file> <arch> <goarch> checks the control fields, the file list and the binary.
verify_deb() {
	local deb=$1 arch=$2 goarch=$3 list want machine conffiles
	dpkg-deb -I "$deb" >/dev/null || die "$deb: dpkg-deb -I cannot read it"
	[ "$(dpkg-deb -f "$deb" Package)" = tunnel-agent ] || die "$deb: Package is not tunnel-agent"
	[ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || die "$deb: Architecture is not $arch"
	list=$(dpkg-deb -c "$deb")
	for want in ./usr/bin/tunnel-agent ./lib/systemd/system/tunnel-agent.service \
		./etc/tunnel-agent/config.yaml ./var/lib/tunnel-agent/; do
		grep -q " $want\$" <<<"$list" || die "$deb: $want is missing from the package"
	done
	grep -q '^-rwxr-xr-x root/root .* ./usr/bin/tunnel-agent$' <<<"$list" ||
		die "$deb: /usr/bin/tunnel-agent is not 0755 root:root"
	dpkg-deb --fsys-tarfile "$deb" | tar -xO ./lib/systemd/system/tunnel-agent.service |
		grep -c '^ExecStart=/usr/bin/tunnel-agent ' >/dev/null ||
		die "$deb: the unit does not start /usr/bin/tunnel-agent"
	grep -q '^drwx------ .* ./var/lib/tunnel-agent/$' <<<"$list" ||
		die "$deb: /var/lib/tunnel-agent is not 0700"
	conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles) || die "$deb: no conffiles"
	grep -qx /etc/tunnel-agent/config.yaml <<<"$conffiles" ||
		die "$deb: /etc/tunnel-agent/config.yaml is not a conffile (it would be overwritten on upgrade)"
	machine=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/tunnel-agent | elf_machine) ||
		die "$deb: cannot read /usr/bin/tunnel-agent"
	case "$goarch:$machine" in
	arm:40 | arm64:183 | amd64:62) ;;
	*) die "$deb: /usr/bin/tunnel-agent is ELF machine $machine, not $goarch" ;;
	esac
}

verify_ipk() {
	local ipk=$1 list conffiles
	list=$(tar -xzOf "$ipk" ./data.tar.gz | tar -tzvf -) || die "$ipk: cannot read data.tar.gz"
	for want in ./usr/bin/tunnel-agent ./etc/init.d/tunnel-agent ./etc/tunnel-agent/config.yaml; do
		grep -q " $want\$" <<<"$list" || die "$ipk: $want is missing from the package"
	done
	conffiles=$(tar -xzOf "$ipk" ./control.tar.gz | tar -xzOf - ./conffiles) || die "$ipk: no conffiles"
	grep -qx /etc/tunnel-agent/config.yaml <<<"$conffiles" ||
		die "$ipk: the config is not a conffile"
}

# install_test installs the host .deb, upgrades it to a newer build of itself and purges it.
install_test() {
	local version=$1 arch upgrade
	arch=$(dpkg --print-architecture)
	[ -f "$PKG_OUT/tunnel-agent_${version}_$arch.deb" ] || die "--install-test needs --deb $arch"
	upgrade=$(mktemp -d)
	# '+' sorts after the end of a version: this one is newer.
	nfpm_pkg deb "$arch" "$(goarch_of_deb "$arch")" "$version+upgradetest" "$upgrade/upgrade.deb"
	scripts/package-install-test.sh "$PKG_OUT/tunnel-agent_${version}_$arch.deb" "$upgrade/upgrade.deb"
	rm -rf "$upgrade"
}

main() {
	ensure_nfpm
	# Reproducible file times: the commit's time, not the build's.
	SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
	export SOURCE_DATE_EPOCH
	local version targets=() arch goarch pair
	version=${PKG_VERSION:-$(pkg_version)}
	for arch in "${DEB_ARCHES[@]}"; do targets+=("tunnel-agent:linux/$(goarch_of_deb "$arch")"); done
	if [ "$IPK" = 1 ]; then
		for pair in $IPK_ARCHES; do targets+=("tunnel-agent:linux/${pair%%:*}"); done
	fi
	scripts/build.sh --out "$OUT" "${targets[@]}"
	packaged_unit
	mkdir -p "$PKG_OUT"
	for arch in "${DEB_ARCHES[@]}"; do
		goarch=$(goarch_of_deb "$arch")
		local deb="$PKG_OUT/tunnel-agent_${version}_$arch.deb"
		nfpm_pkg deb "$arch" "$goarch" "$version" "$deb"
		verify_deb "$deb" "$arch" "$goarch"
	done
	if [ "$IPK" = 1 ]; then
		for pair in $IPK_ARCHES; do
			local ipk="$PKG_OUT/tunnel-agent_${version}_${pair#*:}.ipk"
			nfpm_pkg ipk "${pair#*:}" "${pair%%:*}" "$version" "$ipk"
			verify_ipk "$ipk"
		done
	fi
	if [ "$INSTALL_TEST" = 1 ]; then
		install_test "$version"
	fi
	(cd "$PKG_OUT" && sha256sum tunnel-agent_"$version"_* >SHA256SUMS)
	echo
	echo "| package | bytes |"
	echo "|---|---:|"
	for f in "$PKG_OUT"/tunnel-agent_"$version"_*; do
		printf '| %s | %s |\n' "$(basename "$f")" "$(wc -c <"$f")"
	done
}

main
