# shellcheck shell=bash
# Shared set-up of ab_bench.sh, http_bench.sh and webhook_bench.sh, sourced
# by each (they need neither root nor a Postfix instance: postfix_lib.sh is
# the set-up of those that do): a scratch directory, the processes started
# (stopped by PID at exit), free loopback ports.
#
# The caller sets BENCH_NAME (its messages' prefix; the scratch directory
# is BENCH_DIR, default /tmp, /BENCH_NAME with "-" for "_".XXXXXX), then
# sources this file, and adds the PID of each process it starts to STARTED.

PY=/usr/bin/python3
TMP=$(mktemp -d "${BENCH_DIR:-/tmp}/${BENCH_NAME//_/-}.XXXXXX")
STARTED=()
cleanup() {
    for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${STARTED[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 200); do
        $PY -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "$BENCH_NAME: nothing listens on port $1" >&2
    return 1
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
