#!/bin/bash
# `make bench`: every benchmark in turn. Usage: bench/run.sh [BUILD_DIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-build}

"$HERE/send_bench.sh" "$BUILD"
"$HERE/serve_bench.sh" "$BUILD"
"$HERE/relay_bench.sh" "$BUILD"
"$HERE/dkim_bench.sh" "$BUILD"
"$HERE/sign_bench.sh" "$BUILD"
"$HERE/webhook_bench.sh" "$BUILD"
"$HERE/http_bench.sh" "$BUILD"
