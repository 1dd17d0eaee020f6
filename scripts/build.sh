#!/usr/bin/env bash
# build.sh: cross-compile static, stripped, version-stamped binaries into dist/<os>_<arch>/.
#
#   scripts/build.sh            the full matrix (every binary for every target it ships on)
#   scripts/build.sh --quick    host builds + tunnel-agent for linux/arm (GOARM=6) and linux/arm64 (CI)
#   scripts/build.sh tunnel-agent:linux/arm64 ...   only the named binary:os/arch pairs
#
# Besides the binaries it writes dist/docs/ (man pages tunnel-agent.8, tunnelctl.1,
# tunnel-emulator.1 and tunnel-agent's bash/zsh/fish completions, generated from the
# programs' own flags), and, for every binary built, the release archive
# dist/release/<binary>_<version>_<os>_<arch>.tar.gz (binary, its man page, README,
# LICENSE, its completions; tunnel-agent's also the unit, the init scripts and the
# example config) with dist/release/SHA256SUMS.
#
# Options: --out DIR (default dist), --no-deps-check, --no-archives.
# Environment: VERSION (default: scripts/version.sh: 1.2.3 on tag v1.2.3, else
# 0.0.0-dev+<commit>), COMMIT (default: git rev-parse HEAD), SOURCE_DATE_EPOCH.
# Each main must declare `var version, commit = "dev", ""`: the linker stamps
# main.version and main.commit. A main that does not exist yet is skipped with a warning.
set -euo pipefail

cd "$(dirname "$0")/.."
MODULE=$(go list -m)
OUT=dist
QUICK=0
DEPS_CHECK=1
ARCHIVES=1
REQUESTED=()

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--out) OUT=$2; shift ;;
	--out=*) OUT=${1#--out=} ;;
	--no-deps-check) DEPS_CHECK=0 ;;
	--no-archives) ARCHIVES=0 ;;
	-h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	*:*/*) REQUESTED+=("$1") ;;
	*) echo "build.sh: target $1 is not binary:os/arch, e.g. tunnel-agent:linux/arm64" >&2; exit 2 ;;
	esac
	shift
done

VERSION=$(scripts/version.sh)
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
HOST="$(go env GOHOSTOS)/$(go env GOHOSTARCH)"

AGENT_TARGETS="linux/arm linux/arm64 linux/amd64 linux/mipsle linux/mips linux/riscv64"
CTL_TARGETS="$AGENT_TARGETS darwin/arm64 darwin/amd64 windows/amd64"
EMU_TARGETS="linux/amd64 linux/arm64"

# targets prints the binary:os/arch pairs to build, one per line.
targets() {
	if [ ${#REQUESTED[@]} -gt 0 ]; then
		printf '%s\n' "${REQUESTED[@]}" | awk '!seen[$0]++'
	elif [ "$QUICK" = 1 ]; then
		printf '%s\n' "tunnel-agent:$HOST" "tunnelctl:$HOST" "tunnel-emulator:$HOST" \
			tunnel-agent:linux/arm tunnel-agent:linux/arm64 | awk '!seen[$0]++'
	else
		local t
		for t in $AGENT_TARGETS; do echo "tunnel-agent:$t"; done
		for t in $CTL_TARGETS; do echo "tunnelctl:$t"; done
		for t in $EMU_TARGETS; do echo "tunnel-emulator:$t"; done
	fi
}

# has_main reports whether cmd/$1 holds Go source yet (helpers are still writing some).
has_main() {
	compgen -G "cmd/$1/*.go" >/dev/null
}

# deps_check fails when the device binary links code that must not ship on a device.
deps_check() {
	has_main tunnel-agent || return 0
	local deps bad
	deps=$(go list -deps ./cmd/tunnel-agent)
	bad=$(grep -E "^($MODULE/platform/emulator|github.com/mochi-mqtt/|go.uber.org/goleak)(/|$)" <<<"$deps" || true)
	if [ -n "$bad" ]; then
		echo "build.sh: FAIL: ./cmd/tunnel-agent links emulator/broker/test-only packages:" >&2
		sed 's/^/  /' <<<"$bad" >&2
		echo "build.sh: the device binary must not import them (see LAYOUT.md); move the import behind cmd/tunnelctl or a test" >&2
		return 1
	fi
	if grep -qx testing <<<"$deps"; then
		echo "build.sh: WARNING: ./cmd/tunnel-agent links package testing (find it: go list -deps -f '{{.ImportPath}} {{.Imports}}' ./cmd/tunnel-agent | grep -w testing)" >&2
	fi
	echo "deps: ./cmd/tunnel-agent links $(grep -c . <<<"$deps") packages, $(grep -c '\.' <<<"$deps") outside the standard library"
}

# build_one builds binary $1 for os/arch $2 and appends a row to $ROWS.
build_one() {
	local bin=$1 goos=${2%/*} goarch=${2#*/} ext="" note="" out
	[ "$goos" = windows ] && ext=.exe
	local env=(CGO_ENABLED=0 GOOS="$goos" GOARCH="$goarch")
	case "$goarch" in
	arm) env+=(GOARM=6); note="GOARM=6" ;;
	mips | mipsle) env+=(GOMIPS=softfloat); note="GOMIPS=softfloat" ;;
	esac
	out="$OUT/${goos}_${goarch}/$bin$ext"
	mkdir -p "$(dirname "$out")"
	if ! env "${env[@]}" go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" \
		-o "$out" "./cmd/$bin"; then
		echo "build.sh: FAIL: go build ./cmd/$bin for $goos/$goarch" >&2
		return 1
	fi
	# -X of an undeclared variable is silently ignored: look for the stamped version.
	if [ "$VERSION" != dev ] && ! grep -qaF "$VERSION" "$out"; then
		echo "build.sh: WARNING: $out has no stamped version: cmd/$bin must declare var version, commit = \"dev\", \"\" in package main" >&2
	fi
	BUILT+=("$bin $goos $goarch $out")
	local size
	size=$(wc -c <"$out")
	ROWS+=("$(printf '| %s | %s/%s | %s | %s | %.1f |' "$bin" "$goos" "$goarch" "$note" "$size" \
		"$(awk -v s="$size" 'BEGIN{print s/1048576}')")")
}

# docs writes $OUT/docs: man pages and completions, generated by host builds of
# the programs from their own flag definitions.
docs() {
	local d="$OUT/docs" tmp ctl=() bin
	tmp=$(mktemp -d)
	mkdir -p "$d/completions"
	for bin in tunnel-agent tunnelctl tunnel-emulator; do
		has_main "$bin" || continue
		CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-X main.version=$VERSION" \
			-o "$tmp/$bin" "./cmd/$bin" || { rm -rf "$tmp"; echo "build.sh: FAIL: host build of $bin for the docs" >&2; return 1; }
	done
	"$tmp/tunnel-agent" man >"$d/tunnel-agent.8" &&
		"$tmp/tunnel-agent" completion bash >"$d/completions/tunnel-agent.bash" &&
		"$tmp/tunnel-agent" completion zsh >"$d/completions/_tunnel-agent" &&
		"$tmp/tunnel-agent" completion fish >"$d/completions/tunnel-agent.fish" || {
		rm -rf "$tmp"
		echo "build.sh: FAIL: tunnel-agent man/completion" >&2
		return 1
	}
	if [ -x "$tmp/tunnelctl" ]; then
		ctl+=(--tunnelctl "$tmp/tunnelctl")
		# tunnelctl prints its own completion scripts (tunnelctl completion SHELL).
		"$tmp/tunnelctl" completion bash >"$d/completions/tunnelctl.bash" 2>/dev/null &&
			"$tmp/tunnelctl" completion zsh >"$d/completions/_tunnelctl" 2>/dev/null &&
			"$tmp/tunnelctl" completion fish >"$d/completions/tunnelctl.fish" 2>/dev/null ||
			rm -f "$d/completions/tunnelctl.bash" "$d/completions/_tunnelctl" "$d/completions/tunnelctl.fish"
	fi
	[ -x "$tmp/tunnel-emulator" ] && ctl+=(--tunnel-emulator "$tmp/tunnel-emulator")
	if [ ${#ctl[@]} -gt 0 ]; then
		go run ./cmd/internal/docgen "${ctl[@]}" --version "$VERSION" --out "$d" ||
			{ rm -rf "$tmp"; echo "build.sh: FAIL: docgen" >&2; return 1; }
	fi
	rm -rf "$tmp"
	echo "docs: $(cd "$d" && find . -type f | sort | tr '\n' ' ')"
}

# archive <bin> <goos> <goarch> <path> writes $OUT/release/<bin>_<version>_<os>_<arch>.tar.gz.
archive() {
	local bin=$1 goos=$2 goarch=$3 path=$4 name stage section=1
	name="${bin}_${VERSION}_${goos}_${goarch}"
	stage="$ARCHIVE_TMP/$name"
	mkdir -p "$stage/man"
	cp "$path" "$stage/"
	cp README.md LICENSE "$stage/"
	[ "$bin" = tunnel-agent ] && section=8
	[ -f "$OUT/docs/$bin.$section" ] && cp "$OUT/docs/$bin.$section" "$stage/man/"
	if [ "$bin" = tunnel-agent ]; then
		mkdir -p "$stage/configs/init.d" "$stage/configs/openwrt"
		cp configs/tunnel-agent.service configs/tunnel-agent.yaml "$stage/configs/"
		cp configs/init.d/tunnel-agent "$stage/configs/init.d/"
		cp configs/openwrt/tunnel-agent.init "$stage/configs/openwrt/"
		mkdir -p "$stage/completions"
		cp "$OUT/docs/completions/"*tunnel-agent* "$stage/completions/"
	elif [ "$bin" = tunnelctl ] && compgen -G "$OUT/docs/completions/*tunnelctl*" >/dev/null; then
		mkdir -p "$stage/completions"
		cp "$OUT/docs/completions/"*tunnelctl* "$stage/completions/"
	fi
	tar -C "$ARCHIVE_TMP" --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime="@$SOURCE_DATE_EPOCH" -cf - "$name" | gzip -n >"$OUT/release/$name.tar.gz"
}

archives() {
	local row
	ARCHIVE_TMP=$(mktemp -d)
	rm -rf "$OUT/release"
	mkdir -p "$OUT/release"
	for row in "${BUILT[@]}"; do
		# shellcheck disable=SC2086 # row is four words
		archive $row || { rm -rf "$ARCHIVE_TMP"; return 1; }
	done
	rm -rf "$ARCHIVE_TMP"
	(cd "$OUT/release" && sha256sum -- *.tar.gz >SHA256SUMS)
	echo "release: $(ls "$OUT/release" | grep -c 'tar.gz$') archives and SHA256SUMS in $OUT/release/"
}

ROWS=()
BUILT=()
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
if [ "$DEPS_CHECK" = 1 ]; then deps_check; fi

start=$SECONDS
while IFS= read -r pair; do
	bin=${pair%%:*}
	if ! has_main "$bin"; then
		echo "build.sh: WARNING: cmd/$bin does not exist yet; skipping $pair" >&2
		continue
	fi
	build_one "$bin" "${pair#*:}"
done < <(targets)

if [ ${#ROWS[@]} -eq 0 ]; then
	echo "build.sh: WARNING: nothing was built (no cmd/* main exists yet)" >&2
	exit 0
fi
docs
if [ "$ARCHIVES" = 1 ]; then archives; fi
echo
echo "Built $VERSION ($COMMIT) in $((SECONDS - start)) s into $OUT/ (table also in $OUT/sizes.md):"
echo
{
	echo "| binary | target | flags | bytes | MiB |"
	echo "|---|---|---|---:|---:|"
	printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/sizes.md"
