#!/usr/bin/env bash
# test.sh: the project's whole test run, the same locally and in CI (.ci/run).
#
# Stages, in order: gofmt (no unformatted file), vet, lint (staticcheck, go mod tidy
# -diff), build (cross-compile: the full
# matrix in CI, scripts/build.sh --quick locally), qemu (ARM smoke test: `tunnel-agent
# version` and one real end-to-end test binary under qemu-user for linux/arm64 and
# linux/arm), fuzz (every FuzzXxx, bounded), demo (`tunnelctl demo --check`), bench
# (`go run ./scripts/bench --quick`: the whole path as processes, every byte checked by
# SHA-256; fails only when a measurement fails, never for a missed target), package
# (every .deb, .rpm and .ipk built and checked, lintian on the .deb; when CI=true and
# root on amd64 also: the .deb installed, upgraded and purged here, and the mipsle .ipk,
# the SysV init script and the .rpm installed and run in BusyBox-only chroots),
# greengrass-sdk (`go run ./scripts/greengrass-sdk`: AWS's own Greengrass IPC client,
# npm aws-iot-device-sdk-v2 installed in a cache dir outside the tree, against the test
# nucleus; needs node and npm), test (go test -race ./..., last so its summary closes
# the log).
# Every stage runs even after a failure; the run fails at the end if any stage did.
#
# Environment:
#   SKIP="fuzz qemu"      stages to skip (local use)
#   FUZZ_BUDGET=60        seconds of fuzzing in total (per target: budget/n, 3..10 s)
#   QEMU_TEST=TestName    the agent/tunnel test run under qemu (default: discovered)
#   GO_TEST_FLAGS         extra flags for the go test -race stage
#   BUILD_MATRIX=full     build every target locally too (CI default; local: quick)
#   GREENGRASS_SDK_DIR    npm install directory of the greengrass-sdk stage
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
exec </dev/null

SKIP=${SKIP:-}
FUZZ_BUDGET=${FUZZ_BUDGET:-60}
declare -a NAMES=() SECS=() RESULTS=()

# stage <name> <function>: runs it, times it, records the result, never exits.
stage() {
	local name=$1 fn=$2 start rc
	if [[ " $SKIP " == *" $name "* ]]; then
		NAMES+=("$name"); SECS+=(0); RESULTS+=(skipped)
		return
	fi
	echo
	echo "=== stage $name ($(date -u +%H:%M:%S))"
	start=$SECONDS
	"$fn"
	rc=$?
	NAMES+=("$name"); SECS+=($((SECONDS - start)))
	if [ "$rc" = 0 ]; then
		RESULTS+=(ok)
	else
		RESULTS+=(FAILED)
		echo "=== stage $name FAILED (exit $rc)" >&2
	fi
}

warn() { echo "test.sh: WARNING: $*" >&2; }

has_pkg() { compgen -G "$1/*.go" >/dev/null; }

st_gofmt() {
	local files
	files=$(git ls-files --cached --others --exclude-standard -- '*.go' | xargs -r gofmt -l)
	if [ -n "$files" ]; then
		echo "gofmt: these files are not formatted (run gofmt -w on them):" >&2
		sed 's/^/  /' <<<"$files" >&2
		return 1
	fi
	echo "gofmt: all files formatted"
}

# vet also checks the operator's side as built for Windows (tunnelctl, its tests
# included: wine cannot run Go 1.26 binaries, see cmd/tunnelctl/README.md).
st_vet() { go vet ./... && GOOS=windows go vet ./cmd/tunnelctl/... ./platform/awsapi/...; }

# lint: staticcheck (pinned; the go command fetches it from the module proxy once) and
# go.mod tidiness (go mod tidy -diff prints what tidy would change and fails).
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
st_lint() {
	local rc=0
	go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./... || rc=1
	# A go build in the wrong folder writes a binary that git add -A then commits.
	local bins
	bins=$(git ls-files -z | xargs -0 -r grep -lI --null -L '' -- 2>/dev/null | xargs -0 -r file -N | grep -E ': *ELF ' | cut -d: -f1)
	if [ -n "$bins" ]; then
		echo "lint: compiled binaries are tracked by git (git rm --cached them):" >&2
		sed 's/^/  /' <<<"$bins" >&2
		rc=1
	fi
	if ! go mod tidy -diff; then
		echo "go.mod/go.sum are not tidy: run go mod tidy" >&2
		rc=1
	fi
	return $rc
}

st_test() {
	local count=()
	# CI shares the machine's build cache: do not let it answer with cached passes.
	[ "${CI:-}" = true ] && count=(-count=1)
	# shellcheck disable=SC2086 # GO_TEST_FLAGS is a list of flags
	go test -race "${count[@]}" -timeout 10m ${GO_TEST_FLAGS:-} ./...
}

st_fuzz() { scripts/fuzz.sh "$FUZZ_BUDGET"; }

# CI builds the whole matrix (a 32-bit or big-endian target can fail where amd64
# builds); locally --quick is enough unless BUILD_MATRIX=full.
st_build() {
	if [ "${BUILD_MATRIX:-$([ "${CI:-}" = true ] && echo full || echo quick)}" = full ]; then
		scripts/build.sh
	else
		scripts/build.sh --quick
	fi
}

st_qemu() { scripts/qemu-smoke.sh; }

st_demo() {
	if ! has_pkg cmd/tunnelctl; then
		warn "cmd/tunnelctl does not exist yet: skipping tunnelctl demo --check"
		return 0
	fi
	timeout 300 go run ./cmd/tunnelctl demo --check
}

st_bench() {
	local out
	out=$(mktemp -d) || return 1
	timeout 300 go run ./scripts/bench --quick --out "$out/bench-results.json"
	local rc=$?
	rm -rf "$out"
	return $rc
}

st_package() {
	if ! has_pkg cmd/tunnel-agent || [ ! -f configs/tunnel-agent.service ]; then
		warn "cmd/tunnel-agent or configs/tunnel-agent.service does not exist yet: skipping packaging"
		return 0
	fi
	local args=()
	if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ] && [ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ]; then
		args+=(--install-test --chroot-test)
	fi
	scripts/package.sh "${args[@]}"
}

# greengrass-sdk: the official Greengrass IPC client against our test nucleus. The npm
# packages go to GREENGRASS_SDK_DIR (default ~/.cache/tunnel-agent/greengrass-sdk).
st_greengrass_sdk() {
	local args=()
	[ -n "${GREENGRASS_SDK_DIR:-}" ] && args=(-dir "$GREENGRASS_SDK_DIR")
	timeout 600 go run ./scripts/greengrass-sdk "${args[@]}"
}

main() {
	local total=$SECONDS failed=0 passed=0 i
	echo "test.sh: $(go version), $(nproc) cores, CI=${CI:-false}"
	stage gofmt st_gofmt
	stage vet st_vet
	stage lint st_lint
	stage build st_build
	stage qemu st_qemu
	stage fuzz st_fuzz
	stage demo st_demo
	stage bench st_bench
	stage package st_package
	stage greengrass-sdk st_greengrass_sdk
	stage test st_test

	echo
	echo "| stage | seconds | result |"
	echo "|---|---:|---|"
	for i in "${!NAMES[@]}"; do
		printf '| %s | %s | %s |\n' "${NAMES[$i]}" "${SECS[$i]}" "${RESULTS[$i]}"
		case "${RESULTS[$i]}" in
		ok) passed=$((passed + 1)) ;;
		FAILED) failed=$((failed + 1)) ;;
		esac
	done
	echo "| total | $((SECONDS - total)) | |"
	echo
	if [ "$failed" -gt 0 ]; then
		echo "test.sh: FAILED stages: $(for i in "${!NAMES[@]}"; do [ "${RESULTS[$i]}" = FAILED ] && printf '%s ' "${NAMES[$i]}"; done)" >&2
	fi
	echo "stages: $passed passed, $failed failed"
	[ "$failed" = 0 ]
}

main
