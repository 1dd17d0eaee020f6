#!/bin/sh
# Tunnel benchmark: builds tunnel-emulator, tunnel-agent and tunnelctl, runs
# them on loopback and prints a Markdown table (see scripts/bench/main.go).
#   scripts/bench.sh            full run (< 5 min)
#   scripts/bench.sh --quick    CI run (< 60 s with a warm build cache)
#   scripts/bench.sh --out results.json --reps 5 --keep
set -eu
cd "$(dirname "$0")/.."
exec go run ./scripts/bench "$@"
