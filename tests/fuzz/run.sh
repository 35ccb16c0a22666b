#!/bin/sh
# Run every fuzz target for a bounded time: run.sh BUILD_DIR SECONDS
# New crashes are written to tests/fuzz/crashes/; move each into the
# target's corpus once fixed, so it is replayed by `make check`.
set -eu
build=$1
seconds=${2:-60}
src=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$src/crashes"
status=0
for bin in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    corpus="$src/corpus/${name#fuzz_}"
    mkdir -p "$corpus"
    work=$(mktemp -d)
    echo "== $name (${seconds}s)"
    if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$src/crashes/$name-" "$work" "$corpus" >"$work.log" 2>&1; then
        tail -n 40 "$work.log"
        status=1
    fi
    rm -rf "$work" "$work.log"
done
exit $status
