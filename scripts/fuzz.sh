#!/usr/bin/env bash
# Runs each cargo-fuzz target (routing, scope, names, handshake) for a bounded time. Not part of CI.
#
#   scripts/fuzz.sh            # 60 s per target
#   SECONDS_PER_TARGET=600 scripts/fuzz.sh
#
# Needs a nightly toolchain (`rustup toolchain list`) and cargo-fuzz (installed if missing).
# Crashes land in fuzz/artifacts/<target>/ with the input that caused them.
set -euo pipefail
cd "$(dirname "$0")/.."
per_target=${SECONDS_PER_TARGET:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
for target in routing scope names handshake; do
    echo "== $target (${per_target}s)"
    cargo +nightly fuzz run "$target" -- -max_total_time="$per_target" 2>&1 | tail -4
done
