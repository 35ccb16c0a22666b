#!/bin/bash
# Run integration tests with every `smtpkit` they start wrapped in valgrind
# memcheck, and report memory errors and leaks per test.
#
#   scripts/valgrind-integration.sh [BUILD_DIR] [TEST_NAME...]
#
# BUILD_DIR defaults to ./build (built if needed); TEST_NAME is a file
# name under tests/integration without .py (default: the set below, chosen
# to cover serve, the client, the queue and the privilege split, and to
# stop the server gracefully so that valgrind sees a normal exit; tests
# that kill -9 the server cannot report leaks). Exit status 0 when no test
# failed and valgrind found no error and no definite or indirect leak.
set -u

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
[ $# -gt 0 ] && shift
case "$BUILD" in /*) ;; *) BUILD="$SRC/$BUILD" ;; esac
TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
    # Left out: test_fault_cert_reload times a certificate swap under load,
    # and test_delivery_dsn_delay a delay notice against the retry
    # schedule; memcheck's slowdown on a busy machine makes them fail now
    # and then. test_client_addresses runs no smtpkit (only the
    # example_send_simple program), so the wrapper would check nothing.
    # test_track_restart is in although one of its daemons is killed with
    # -9: the others and the CLI calls still report. The set takes about 6
    # minutes on 2 busy cores; name others (test_delivery_orcpt_utf8, 15-21 s)
    # to run them too.
    TESTS=(test_serve_interop_smtplib test_serve_relay test_send_basic test_send_auth
           test_queue_cli test_fault_reset test_fault_privsep test_delivery_dsn_notify
           test_track_restart test_spool_sync_files)
fi

command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
if [ ! -x "$BUILD/smtpkit" ]; then
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSK_WERROR=ON >/dev/null &&
        cmake --build "$BUILD" -j "$(nproc 2>/dev/null || echo 2)" || exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sk-valgrind-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
WRAP="$WORK/smtpkit"
# One log per process (%p): the server, its AUTH helper (a fork) and each
# CLI call are reported separately.
cat >"$WRAP" <<EOF
#!/bin/sh
exec valgrind --quiet --vgdb=no --error-exitcode=99 --leak-check=full \\
  --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \\
  --track-origins=yes --log-file="\$SK_VALGRIND_LOGS/vg.%p.log" "$BUILD/smtpkit" "\$@"
EOF
chmod +x "$WRAP"

failed=0
for t in "${TESTS[@]}"; do
    script="$SRC/tests/integration/$t.py"
    [ -f "$script" ] || { echo "no such test: $t" >&2; failed=1; continue; }
    logs="$WORK/$t"
    mkdir -p "$logs"
    start=$(date +%s)
    SMTPKIT="$WRAP" SK_SOURCE_DIR="$SRC" SK_BUILD_DIR="$BUILD" SK_VALGRIND_LOGS="$logs" \
        PYTHONDONTWRITEBYTECODE=1 timeout 900 /usr/bin/python3 "$script" >"$logs/test.out" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    # A log that is not empty holds an error or a leak (--quiet).
    bad=()
    for f in "$logs"/vg.*.log; do
        [ -s "$f" ] && bad+=("$f")
    done
    if [ $rc -ne 0 ] || [ ${#bad[@]} -gt 0 ]; then
        failed=1
        echo "FAIL $t (test exit $rc, ${#bad[@]} process(es) with valgrind reports, ${secs}s)"
        [ $rc -ne 0 ] && tail -n 20 "$logs/test.out" | sed 's/^/    /'
        for f in "${bad[@]}"; do
            echo "  --- $(basename "$f")"
            head -n 60 "$f" | sed 's/^/    /'
        done
    else
        n=$(ls "$logs"/vg.*.log 2>/dev/null | wc -l)
        echo "ok   $t ($n processes clean, ${secs}s)"
    fi
done
exit $failed
