#!/bin/sh
# version.sh: print the one version string of the binaries and the packages:
#   1.2.3                  at a commit tagged v1.2.3
#   0.0.0-dev+<commit>     anywhere else (<commit>: 12 hex digits; ".dirty" with local changes)
# VERSION in the environment wins (used as is). Valid as SemVer, Debian, opkg and (via
# nfpm, which splits it into Version 0.0.0 and Release dev+<commit>) RPM versions.
set -eu
cd "$(dirname "$0")/.."
if [ -n "${VERSION:-}" ]; then
	echo "$VERSION"
	exit 0
fi
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
	echo "${tag#v}"
	exit 0
fi
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=
if [ "$commit" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then
	dirty=.dirty
fi
echo "0.0.0-dev+$commit$dirty"
