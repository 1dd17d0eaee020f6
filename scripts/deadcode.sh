#!/usr/bin/env bash
# deadcode.sh: fails when a function is unreachable from the programs.
#
# golang.org/x/tools/cmd/deadcode (pinned) lists the functions no main
# package (cmd/*, scripts/bench) can reach. Two kinds are allowed:
#   - functions of test-support packages (a path element ending in "test",
#     such as agent/tunnel/tunneltest), which exist for the tests;
#   - the entries of scripts/deadcode-allow.txt, each with the reason it
#     stays (public API of a library package that tests use, say).
# Anything else is dead, or alive only for a test: delete it, move it into
# a _test.go file, or allow it with a reason.
#
# Environment: DEADCODE_VERSION (default below).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

DEADCODE_VERSION=${DEADCODE_VERSION:-v0.52.0}
allow=scripts/deadcode-allow.txt

out=$(go run "golang.org/x/tools/cmd/deadcode@$DEADCODE_VERSION" ./...) || {
	echo "deadcode: the tool failed" >&2
	exit 1
}
# Lines look like "path/file.go:12:6: unreachable func: Name".
bad=$(awk -v allow="$allow" '
	BEGIN {
		while ((getline line < allow) > 0) {
			sub(/#.*/, "", line); gsub(/^[ \t]+|[ \t]+$/, "", line)
			if (line != "") ok[line] = 1
		}
	}
	{
		split($1, loc, ":"); file = loc[1]; name = $NF
		if (file ~ /(^|\/)[a-z]*test\//) next
		if ((file " " name) in ok) { used[file " " name] = 1; next }
		print
	}
	END {
		for (k in ok) if (!(k in used)) print "stale allow entry (no longer reported, remove it): " k
	}' <<<"$out")
if [ -n "$bad" ]; then
	echo "deadcode: unreachable from every program (delete, move to a _test.go file, or add to $allow with a reason):" >&2
	sed 's/^/  /' <<<"$bad" >&2
	exit 1
fi
echo "deadcode: nothing unreachable outside test-support packages and $allow"
