#!/usr/bin/env bash
# qemu-smoke.sh: prove the ARM builds run. Under qemu-user it runs `tunnel-agent version`
# of the linux/arm (on an ARMv6 arm1176 CPU, the Pi Zero/1) and linux/arm64 builds, and one
# real end-to-end test binary of ./agent/tunnel for each (go test -exec).
# Environment: QEMU_TEST=TestName picks that test (default: the first TestIntegration*,
# source and destination through a loopback TLS relay, else a TLS/loopback test by name).
set -euo pipefail

cd "$(dirname "$0")/.."
PKG=./agent/tunnel
QEMU_ARM=(qemu-arm-static -cpu arm1176)
QEMU_ARM64=(qemu-aarch64-static)

die() { echo "qemu-smoke: FAIL: $*" >&2; exit 1; }
warn() { echo "qemu-smoke: WARNING: $*" >&2; }

for q in qemu-arm-static qemu-aarch64-static; do
	if ! command -v "$q" >/dev/null; then
		# CI installs it (.ci/run); a local run says so and skips.
		[ "${CI:-}" != true ] || die "$q is missing: apt-get install qemu-user-static"
		warn "$q is missing (apt-get install qemu-user-static): SKIPPING the ARM smoke test"
		exit 0
	fi
done

# run_version <dir> <qemu...>: the binary must print something and exit 0.
run_version() {
	local bin="dist/$1/tunnel-agent" out
	shift
	out=$("$@" "$bin" version 2>&1) || die "$* $bin version: $out"
	[ -n "$out" ] || die "$bin version printed nothing"
	echo "qemu-smoke: ok: $* $bin version: $out"
}

if compgen -G "cmd/tunnel-agent/*.go" >/dev/null; then
	scripts/build.sh --no-deps-check tunnel-agent:linux/arm tunnel-agent:linux/arm64 >/dev/null
	run_version linux_arm "${QEMU_ARM[@]}"
	run_version linux_arm64 "${QEMU_ARM64[@]}"
else
	warn "cmd/tunnel-agent does not exist yet: no version smoke test under qemu"
fi

if ! compgen -G "$PKG/*_test.go" >/dev/null; then
	warn "$PKG has no tests yet: NO end-to-end test ran under qemu"
	exit 0
fi

test=${QEMU_TEST:-}
if [ -z "$test" ]; then
	list=$(go test -list '^Test' "$PKG") || die "go test -list $PKG"
	# Prefer the end-to-end one: source and destination sessions through a TLS relay.
	test=$(grep -E '^Test(Integration|EndToEnd|E2E|.*TLS|.*Loopback)' <<<"$list" | head -n1 || true)
	[ -n "$test" ] || test=$(grep -E '^Test' <<<"$list" | head -n1 || true)
	[ -n "$test" ] || die "$PKG lists no tests"
fi

# run_test <goarch> <env...> -- <qemu...>
run_test() {
	local goarch=$1 envs=() out
	shift
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	echo "qemu-smoke: GOARCH=$goarch ${envs[*]} go test -exec '$*' -run '^$test\$' $PKG"
	out=$(env GOARCH="$goarch" CGO_ENABLED=0 "${envs[@]}" go test -count=1 -v -timeout 5m \
		-exec "$*" -run "^$test\$" "$PKG" 2>&1) || { echo "$out"; die "$test under $*"; }
	echo "$out" | tail -n 5
	grep -q -- "--- PASS: $test" <<<"$out" || die "$test did not run under $*"
}

run_test arm64 -- "${QEMU_ARM64[@]}"
run_test arm GOARM=6 -- "${QEMU_ARM[@]}"
