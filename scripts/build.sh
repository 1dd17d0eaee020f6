#!/usr/bin/env bash
# build.sh: cross-compile static, stripped, version-stamped binaries into dist/<os>_<arch>/.
#
#   scripts/build.sh            the full matrix (every binary for every target it ships on)
#   scripts/build.sh --quick    host builds + tunnel-agent for linux/arm (GOARM=6) and linux/arm64 (CI)
#   scripts/build.sh tunnel-agent:linux/arm64 ...   only the named binary:os/arch pairs
#
# Options: --out DIR (default dist), --no-deps-check.
# Environment: VERSION (default: git describe), COMMIT (default: git rev-parse HEAD).
# Each main must declare `var version, commit = "dev", ""`: the linker stamps
# main.version and main.commit. A main that does not exist yet is skipped with a warning.
set -euo pipefail

cd "$(dirname "$0")/.."
MODULE=$(go list -m)
OUT=dist
QUICK=0
DEPS_CHECK=1
REQUESTED=()

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--out) OUT=$2; shift ;;
	--out=*) OUT=${1#--out=} ;;
	--no-deps-check) DEPS_CHECK=0 ;;
	-h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	*:*/*) REQUESTED+=("$1") ;;
	*) echo "build.sh: target $1 is not binary:os/arch, e.g. tunnel-agent:linux/arm64" >&2; exit 2 ;;
	esac
	shift
done

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
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
	local size
	size=$(wc -c <"$out")
	ROWS+=("$(printf '| %s | %s/%s | %s | %s | %.1f |' "$bin" "$goos" "$goarch" "$note" "$size" \
		"$(awk -v s="$size" 'BEGIN{print s/1048576}')")")
}

ROWS=()
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
echo
echo "Built $VERSION ($COMMIT) in $((SECONDS - start)) s into $OUT/ (table also in $OUT/sizes.md):"
echo
{
	echo "| binary | target | flags | bytes | MiB |"
	echo "|---|---|---|---:|---:|"
	printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/sizes.md"
