#!/bin/bash
# Deep queue: `smtpkit serve` restarted on a spool that holds N messages.
# The spool is filled by bench/spool_fill.c through the library's own spool
# (the code path serve takes after DATA: journal, groups, files), not by N
# SMTP sessions: N deferred 1 KiB messages, one recipient each over DOMAINS
# domains, next attempt an hour away (so nothing is delivered while
# measuring). Then, from the start of `smtpkit serve` on it:
#   - accepting: a new message sent at once gets its 250 (the greeting
#     waits until the daemon's loop runs);
#   - scheduled: the queue's "queue started messages=N" line (every
#     message loaded, with its timer);
#   - resident memory (VmRSS) once scheduled, against the same daemon on an
#     empty spool: the difference per queued message;
#   - `smtpkit queue list` (every message, text), `queue summary` (counts
#     by state and domain from the daemon's table, text and JSON) and `queue delete
#     --destination` of a domain with no mail (a filtered pass over the
#     queue through the daemon's control socket), timed.
# Loopback only, free ports; every process started here is stopped by PID;
# the data directories are removed at the end.
# Usage: bench/deep_queue.sh [BUILD_DIR]
# Env: N (default 1000000), DOMAINS (default 1000), BENCH_DIR (scratch,
#      default /tmp; N messages take about 5 KiB each of disk), COMPARE
#      (another build directory: its smtpkit and this build's restarted
#      on the same spool in turn, ROUNDS times (default 2), for a
#      before/after in one run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
N=${N:-1000000}
DOMAINS=${DOMAINS:-1000}
SMTPKIT=$BUILD/smtpkit
PY=/usr/bin/python3
[ -x "$SMTPKIT" ] || { echo "deep_queue: no $SMTPKIT; build first" >&2; exit 66; }

TMP=$(mktemp -d "${BENCH_DIR:-/tmp}/sk-deep-XXXXXX")
STARTED=()
cleanup() {
    for pid in "${STARTED[@]:-}"; do
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# Against this build's library and headers (smtpkit.pc names the installed
# prefix, which need not exist).
# shellcheck disable=SC2046
cc -O2 -o "$TMP/spool_fill" "$HERE/spool_fill.c" "$HERE/fill_common.c" -I"$HERE/../include" \
    -L"$BUILD" -Wl,-rpath,"$BUILD" -lsmtpkit $(pkg-config --cflags --libs libevent)
ROUNDS=${ROUNDS:-2}

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
since() { $PY -c "print('%.2f' % ($(now) - $1))"; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
t=$(now)
"$TMP/spool_fill" "$TMP/full" "$N" "$DOMAINS"
echo "filled: $N messages over $DOMAINS domains in $(since "$t") s;" \
    "spool $(du -sh "$TMP/full/spool" | cut -f1)"
# The fill's dirty pages on disk first, or the first start competes with
# their writeback.
sync
mkdir -p "$TMP/empty"

# run_serve PROGRAM DIR: start PROGRAM serve on DIR; prints "accept_s
# scheduled_s rss_kib" once the queue has started, and leaves the daemon
# running (its PID in $TMP/pid).
run_serve() {
    local prog=$1 dir=$2 port
    port=$(free_port)
    local t0
    t0=$(now)
    "$prog" serve --data-dir "$dir" --listen "127.0.0.1:$port" --hostname deep.test \
        --relay-host "127.0.0.1:9" --log-level info 2>"$dir.log" &
    local pid=$!
    STARTED+=("$pid")
    echo "$pid" >"$TMP/pid"
    $PY - "$port" "$t0" "$dir.log" "$pid" <<'EOF'
import smtplib, socket, sys, time
port, t0, log, pid = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
deadline = time.time() + 600
while True:
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=600)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("serve did not listen")
        time.sleep(0.01)
s.sendmail("a@bench.test", ["b@new.deep.test"], b"Subject: new\r\n\r\nnew\r\n")
accept = time.time() - t0
s.quit()
sched = None
while sched is None and time.time() < deadline:
    with open(log) as f:
        for line in f:
            if "queue started messages=" in line:
                sched = time.time() - t0
    time.sleep(0.01)
rss = 0
with open("/proc/%s/status" % pid) as f:
    for line in f:
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
print("%.2f %.2f %d" % (accept, sched or -1, rss))
EOF
}

stop_serve() {
    local pid
    pid=$(cat "$TMP/pid")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
}

# restart PROGRAM LABEL: the empty spool, then the full one (left running).
restart() {
    local e_acc e_sched e_rss acc sched rss
    read -r e_acc e_sched e_rss < <(run_serve "$1" "$TMP/empty")
    stop_serve
    echo "$2: empty spool: accepting after ${e_acc} s, queue started after ${e_sched} s," \
        "VmRSS ${e_rss} KiB"
    read -r acc sched rss < <(run_serve "$1" "$TMP/full")
    echo "$2: $N messages: accepting after ${acc} s, queue started after ${sched} s," \
        "VmRSS ${rss} KiB"
    grep -m1 "spool recovered" "$TMP/full.log" || true
    grep -m1 "queue started" "$TMP/full.log" || true
    $PY -c "print('$2: resident memory per queued message: %.0f octets' % (($rss - $e_rss) * 1024.0 / $N))"
}

if [ -n "${COMPARE:-}" ]; then
    for r in $(seq 1 "$ROUNDS"); do
        restart "$(cd "$COMPARE" && pwd)/smtpkit" "round $r compare"
        stop_serve
        restart "$SMTPKIT" "round $r this build"
        if [ "$r" -lt "$ROUNDS" ]; then stop_serve; fi
    done
else
    restart "$SMTPKIT" "this build"
fi
t=$(now)
"$SMTPKIT" queue --data-dir "$TMP/full" list >/dev/null
echo "queue list ($N messages): $(since "$t") s"
t=$(now)
"$SMTPKIT" queue --data-dir "$TMP/full" summary >"$TMP/summary.txt"
echo "queue summary ($N messages, from the daemon's table): $(since "$t") s"
head -4 "$TMP/summary.txt"
t=$(now)
"$SMTPKIT" queue --data-dir "$TMP/full" summary --json >/dev/null
echo "queue summary --json: $(since "$t") s"
t=$(now)
"$SMTPKIT" queue --data-dir "$TMP/full" delete --destination nomail.deep.test >/dev/null || true
echo "queue delete --destination (no match, through the daemon): $(since "$t") s"
stop_serve
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
