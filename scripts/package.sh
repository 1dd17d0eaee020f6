#!/usr/bin/env bash
# package.sh: build the tunnel-agent packages with nfpm into dist/packages/ and check them.
#
#   scripts/package.sh                 .deb (armhf, arm64, amd64), .rpm (x86_64, aarch64,
#                                      armv7hl) and .ipk (OpenWrt, four targets)
#   scripts/package.sh --deb amd64     only the named .deb architecture(s) (repeatable);
#                                      --rpm x86_64 likewise; --no-deb, --no-rpm, --no-ipk
#   scripts/package.sh --install-test  also install, upgrade and purge the host .deb on
#                                      this machine (root only; used by CI)
#   scripts/package.sh --chroot-test   also install the mipsle .ipk and the SysV init
#                                      script into a BusyBox-only chroot and run them there
#                                      (root, busybox-static, qemu-user-static; used by CI)
#
# Every package is checked: dpkg-deb and lintian (no error) for the .deb, rpm -qip/-qlp
# and sh -n of its scriptlets for the .rpm, the ar/tar layout, conffiles and sh -n of
# the maintainer scripts for the .ipk. The version is scripts/version.sh's (the same
# string the binaries print). nfpm is installed with `go install` into $TOOLS_DIR
# (default ~/.cache/tunnel-agent-tools) when missing. The armhf .deb carries a GOARM=6
# binary: it runs on every Raspberry Pi (Raspberry Pi OS armhf is ARMv6) and on Debian
# armhf (ARMv7).
# Environment: VERSION (default scripts/version.sh), IPK_ARCHES (goarch:opkg-arch pairs,
# default below), LINTIAN=0 to skip lintian.
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
DOCS=$OUT/pkg/docs
DEB_ARCHES=()
RPM_ARCHES=()
DEB=1
RPM=1
IPK=1
INSTALL_TEST=0
CHROOT_TEST=0
# OpenWrt opkg only installs packages whose arch its target lists; these are the
# most common router/SBC targets. Override for others (e.g. arm:arm_arm1176jzf-s_vfp).
IPK_ARCHES=${IPK_ARCHES:-"mipsle:mipsel_24kc mips:mips_24kc arm:arm_cortex-a7_neon-vfpv4 arm64:aarch64_cortex-a53"}

while [ $# -gt 0 ]; do
	case "$1" in
	--deb) DEB_ARCHES+=("$2"); shift ;;
	--rpm) RPM_ARCHES+=("$2"); shift ;;
	--no-deb) DEB=0 ;;
	--no-rpm) RPM=0 ;;
	--no-ipk) IPK=0 ;;
	--install-test) INSTALL_TEST=1 ;;
	--chroot-test) CHROOT_TEST=1 ;;
	-h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ ${#DEB_ARCHES[@]} -gt 0 ] || DEB_ARCHES=(armhf arm64 amd64)
[ ${#RPM_ARCHES[@]} -gt 0 ] || RPM_ARCHES=(x86_64 aarch64 armv7hl)
[ "$DEB" = 1 ] || DEB_ARCHES=()
[ "$RPM" = 1 ] || RPM_ARCHES=()

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

goarch_of_rpm() {
	case "$1" in
	x86_64) echo amd64 ;;
	aarch64) echo arm64 ;;
	armv7hl) echo arm ;;
	*) die "unsupported .rpm architecture $1 (x86_64, aarch64, armv7hl)" ;;
	esac
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
	local release=""
	if [ "$1" = rpm ]; then
		# RPM: Version may not contain '-': 0.0.0-dev+abc is Version 0.0.0, Release dev+abc.
		release=1
		case "$4" in *-*) release=${4#*-} ;; esac
		set -- "$1" "$2" "$3" "${4%%-*}" "$5"
	fi
	PKG_RELEASE=$release PKG_ARCH=$2 PKG_BIN="$OUT/linux_$3/tunnel-agent" PKG_VERSION=$4 PKG_UNIT=$UNIT PKG_DOCS=$DOCS \
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
	for want in ./usr/share/man/man8/tunnel-agent.8.gz ./usr/share/doc/tunnel-agent/copyright \
		./usr/share/doc/tunnel-agent/changelog.gz ./usr/share/bash-completion/completions/tunnel-agent \
		./usr/share/zsh/vendor-completions/_tunnel-agent ./usr/share/fish/vendor_completions.d/tunnel-agent.fish; do
		grep -q " $want\$" <<<"$list" || die "$deb: $want is missing from the package"
	done
	[ "$(dpkg-deb -f "$deb" Version)" = "$VERSION" ] || die "$deb: Version is not $VERSION"
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

# ipk_member <ipk> <member> prints a member (control.tar.gz, data.tar.gz) of an .ipk,
# which is an ar archive (opkg-build, OpenWrt) or a gzipped tar (nfpm): read both.
ipk_member() {
	if [ "$(head -c 7 "$1" | tr -d '\0')" = '!<arch>' ]; then
		ar p "$1" "$2"
	else
		tar -xzOf "$1" "./$2"
	fi
}

verify_ipk() {
	local ipk=$1 goarch=$2 list conffiles control script machine tmp
	list=$(ipk_member "$ipk" data.tar.gz | tar -tzvf -) || die "$ipk: cannot read data.tar.gz"
	for want in ./usr/bin/tunnel-agent ./etc/init.d/tunnel-agent ./etc/tunnel-agent/config.yaml; do
		grep -q " $want\$" <<<"$list" || die "$ipk: $want is missing from the package"
	done
	grep -q '^-rwxr-xr-x .* ./etc/init.d/tunnel-agent$' <<<"$list" || die "$ipk: /etc/init.d/tunnel-agent is not 0755"
	tmp=$(mktemp -d)
	ipk_member "$ipk" control.tar.gz | tar -xzf - -C "$tmp" || die "$ipk: cannot read control.tar.gz"
	conffiles=$(cat "$tmp/conffiles" 2>/dev/null) || die "$ipk: no conffiles"
	grep -qx /etc/tunnel-agent/config.yaml <<<"$conffiles" || die "$ipk: the config is not a conffile"
	control=$(cat "$tmp/control")
	grep -q "^Version: $VERSION\$" <<<"$control" || die "$ipk: Version is not $VERSION"
	for script in preinst postinst prerm postrm; do
		[ -f "$tmp/$script" ] || die "$ipk: no $script"
		sh -n "$tmp/$script" || die "$ipk: $script: sh -n failed"
		! grep -qE '\b(getent|useradd|groupadd|systemctl)\b' "$tmp/$script" ||
			die "$ipk: $script calls a tool OpenWrt does not have (getent/useradd/groupadd/systemctl)"
	done
	rm -rf "$tmp"
	machine=$(ipk_member "$ipk" data.tar.gz | tar -xzOf - ./usr/bin/tunnel-agent | elf_machine)
	case "$goarch:$machine" in
	mipsle:8 | mips:2048 | arm:40 | arm64:183) ;; # mips is big-endian: 8 read as little-endian
	*) die "$ipk: /usr/bin/tunnel-agent is ELF machine $machine, not $goarch" ;;
	esac
}

# verify_rpm <file> <arch>: rpm -qip / -qlp, the scriptlets parse with sh -n.
verify_rpm() {
	local rpm=$1 arch=$2 info list scripts f
	command -v rpm >/dev/null || { echo "package.sh: WARNING: rpm is not installed: $rpm not inspected (apt-get install rpm)" >&2; return 0; }
	info=$(rpm -qip "$rpm" 2>/dev/null) || die "$rpm: rpm -qip cannot read it"
	grep -q '^Name *: tunnel-agent' <<<"$info" || die "$rpm: Name is not tunnel-agent"
	grep -q "^Architecture: $arch\$" <<<"$info" || die "$rpm: Architecture is not $arch"
	[ "$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$rpm" 2>/dev/null)" = "$VERSION" ] || case "$VERSION" in
	*-*) die "$rpm: Version-Release is not $VERSION" ;;
	esac
	list=$(rpm -qlp "$rpm" 2>/dev/null) || die "$rpm: rpm -qlp failed"
	for f in /usr/bin/tunnel-agent /usr/lib/systemd/system/tunnel-agent.service /etc/tunnel-agent/config.yaml \
		/var/lib/tunnel-agent /usr/share/man/man8/tunnel-agent.8.gz /usr/share/licenses/tunnel-agent/LICENSE \
		/usr/share/bash-completion/completions/tunnel-agent; do
		grep -qx "$f" <<<"$list" || die "$rpm: $f is missing (rpm -qlp)"
	done
	rpm -qcp "$rpm" 2>/dev/null | grep -qx /etc/tunnel-agent/config.yaml || die "$rpm: the config is not %config"
	rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" 2>/dev/null |
		grep -qx 'drwx------ tunnel-agent:tunnel-agent /var/lib/tunnel-agent' ||
		die "$rpm: /var/lib/tunnel-agent is not 0700 tunnel-agent:tunnel-agent"
	scripts=$(mktemp -d)
	for f in PREIN POSTIN PREUN POSTUN; do
		rpm -qp --qf "%{$f}" "$rpm" >"$scripts/$f" 2>/dev/null
		[ -s "$scripts/$f" ] && [ "$(cat "$scripts/$f")" != "(none)" ] || die "$rpm: no %$f scriptlet"
		sh -n "$scripts/$f" || die "$rpm: %$f: sh -n failed"
	done
	grep -q useradd "$scripts/PREIN" || die "$rpm: %pre does not create the user with useradd"
	rm -rf "$scripts"
}

# lint_deb runs lintian; any error fails, warnings are printed (README explains those left).
lint_deb() {
	local deb=$1 out
	[ "${LINTIAN:-1}" = 1 ] || return 0
	if ! command -v lintian >/dev/null; then
		[ "${CI:-}" = true ] && die "lintian is not installed (.ci/run installs it)"
		echo "package.sh: WARNING: lintian is not installed: $deb not linted (apt-get install lintian)" >&2
		return 0
	fi
	out=$(lintian --tag-display-limit 0 "$deb" 2>&1 | grep -v '^running with root privileges') || true
	[ -z "$out" ] || sed 's/^/lintian: /' <<<"$out"
	! grep -q '^E: ' <<<"$out" || die "$deb: lintian reports errors (above)"
	echo "lintian: $(basename "$deb"): $(grep -c '^E: ' <<<"$out") errors, $(grep -c '^W: ' <<<"$out") warnings"
}

# prepare_docs gathers what the .deb and .rpm ship besides the binary: the gzipped man
# page and completions (from scripts/build.sh's dist/docs) and the changelogs.
prepare_docs() {
	local version=$1 native=1 date
	rm -rf "$DOCS"
	mkdir -p "$DOCS"
	[ -f "$OUT/docs/tunnel-agent.8" ] || die "$OUT/docs/tunnel-agent.8 is missing (scripts/build.sh writes it)"
	gzip -9n <"$OUT/docs/tunnel-agent.8" >"$DOCS/tunnel-agent.8.gz"
	cp -r "$OUT/docs/completions" "$DOCS/"
	date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
	# changelog.gz: what changed since the last tag, in Debian's changelog format.
	changelog_entry "$version" "$date" "$(changes)" | gzip -9n >"$DOCS/changelog.gz"
	# A version with a revision (0.0.0-dev+...) is non-native for Debian, whose
	# packaging changelog is then changelog.Debian.gz.
	case "$version" in *-*) native=0 ;; esac
	if [ "$native" = 0 ]; then
		changelog_entry "$version" "$date" "  * Package built by scripts/package.sh from commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)." |
			gzip -9n >"$DOCS/changelog.Debian.gz"
	fi
}

# changes lists the commit subjects since the last tag (at most 40) as changelog items.
changes() {
	local range=HEAD tag
	if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' HEAD^ 2>/dev/null); then range="$tag..HEAD"; fi
	git log --no-merges --format='%s' -n 40 "$range" 2>/dev/null | cut -c1-74 | sed 's/^/  * /'
	[ -n "$(git log -n1 --format=%s 2>/dev/null)" ] || echo "  * Built outside a git checkout."
}

# changelog_entry <version> <date> <items>
changelog_entry() {
	printf 'tunnel-agent (%s) unstable; urgency=medium\n\n%s\n\n -- %s  %s\n' "$1" "$3" \
		"tunnel-agent maintainers <tunnel-agent@users.noreply.github.com>" "$2"
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
	# One version for the binaries and the packages.
	VERSION=$(scripts/version.sh)
	export VERSION
	local version=$VERSION targets=() arch goarch pair f
	for arch in "${DEB_ARCHES[@]}"; do targets+=("tunnel-agent:linux/$(goarch_of_deb "$arch")"); done
	for arch in "${RPM_ARCHES[@]}"; do targets+=("tunnel-agent:linux/$(goarch_of_rpm "$arch")"); done
	if [ "$IPK" = 1 ]; then
		for pair in $IPK_ARCHES; do targets+=("tunnel-agent:linux/${pair%%:*}"); done
	fi
	[ "$CHROOT_TEST" = 1 ] && targets+=("tunnel-agent:$(go env GOHOSTOS)/$(go env GOHOSTARCH)")
	scripts/build.sh --no-archives --out "$OUT" "${targets[@]}"
	packaged_unit
	prepare_docs "$version"
	rm -f "$PKG_OUT"/tunnel-agent_*
	mkdir -p "$PKG_OUT"
	for arch in "${DEB_ARCHES[@]}"; do
		goarch=$(goarch_of_deb "$arch")
		local deb="$PKG_OUT/tunnel-agent_${version}_$arch.deb"
		nfpm_pkg deb "$arch" "$goarch" "$version" "$deb"
		verify_deb "$deb" "$arch" "$goarch"
	done
	# lintian takes ~10 s a package: the host architecture's .deb stands for all.
	for arch in "${DEB_ARCHES[@]}"; do
		if [ "$arch" = "$(dpkg --print-architecture 2>/dev/null)" ] || [ ${#DEB_ARCHES[@]} = 1 ]; then
			lint_deb "$PKG_OUT/tunnel-agent_${version}_$arch.deb"
			break
		fi
	done
	for arch in "${RPM_ARCHES[@]}"; do
		local rpm="$PKG_OUT/tunnel-agent_${version}_$arch.rpm"
		nfpm_pkg rpm "$arch" "$(goarch_of_rpm "$arch")" "$version" "$rpm"
		verify_rpm "$rpm" "$arch"
	done
	if [ "$IPK" = 1 ]; then
		for pair in $IPK_ARCHES; do
			local ipk="$PKG_OUT/tunnel-agent_${version}_${pair#*:}.ipk"
			nfpm_pkg ipk "${pair#*:}" "${pair%%:*}" "$version" "$ipk"
			verify_ipk "$ipk" "${pair%%:*}"
		done
	fi
	(cd "$PKG_OUT" && sha256sum tunnel-agent_"$version"_* >SHA256SUMS)
	echo
	echo "| package | bytes |"
	echo "|---|---:|"
	for f in "$PKG_OUT"/tunnel-agent_"$version"_*; do
		printf '| %s | %s |\n' "$(basename "$f")" "$(wc -c <"$f")"
	done
	if [ "$INSTALL_TEST" = 1 ]; then
		install_test "$version"
	fi
	if [ "$CHROOT_TEST" = 1 ]; then
		local args=() host_rpm
		f=$(ls "$PKG_OUT"/tunnel-agent_"${version}"_mipsel*.ipk 2>/dev/null | head -1) || true
		[ -n "$f" ] && args+=(--ipk "$f" --host-bin "$OUT/linux_$(go env GOHOSTARCH)/tunnel-agent")
		host_rpm=$(ls "$PKG_OUT"/tunnel-agent_"${version}_$(uname -m)".rpm 2>/dev/null | head -1) || true
		[ -n "$host_rpm" ] && args+=(--rpm "$host_rpm")
		[ ${#args[@]} -gt 0 ] || die "--chroot-test needs the mipsle .ipk or the host's .rpm"
		scripts/package-chroot-test.sh "${args[@]}"
	fi
}

main
