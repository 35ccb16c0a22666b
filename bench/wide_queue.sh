#!/bin/bash
# Wide queue: `smtpkit serve` delivering to DOMAINS (default 10,000)
# healthy destination domains at once, alone (run A) and with slow, failing
# and throttled destinations queued before them (run B). The healthy
# domains' MX records (tests/integration/dns_server.py) point at three MX
# hosts, Postfix smtp-sink on 127.0.0.1-3, each message dumped to a file
# (smtp-sink -d) whose modification time is its delivery time. In B, also:
#   - slow: BAD_DOMAINS domains over 8 MX hosts (127.0.0.10-17, so 8
#     destinations, 64 connections' worth against 32 slots) answered by
#     bench/wide_queue.py, which sleeps SLOW_DELAY before each reply;
#   - failing: BAD_DOMAINS domains over 4 MX hosts (127.0.0.20-23),
#     smtp-sink -r RCPT (451 to every recipient, so deferred, retried);
#   - throttled: BAD_DOMAINS domains over 2 MX hosts (127.0.0.30-31),
#     smtp-sink, each destination held to THROTTLE by --rate-limit;
# BAD_PER_DOMAIN messages per domain, queued before the healthy mail.
# The spool is filled through the library's spool API (bench/wide_fill.c,
# every message active and due now), then serve is started on it: the
# healthy rate is the healthy messages over the time from the daemon's
# start to the last healthy delivery (and from the first delivery), and
# the spread is p50/p95/max of each healthy domain's last delivery since
# the start. A and B alternate ROUNDS times (B first in even rounds); the
# result is B's healthy rate over A's (target >= 0.90) and the spreads.
# Loopback only, one free port on every address; every process started
# here is stopped by PID; the scratch directory is removed at the end.
# Usage: bench/wide_queue.sh [BUILD_DIR]   (as root: smtp-sink runs as nobody)
# Env: DOMAINS (10000), PER_DOMAIN (2), BAD_DOMAINS (40 of each kind),
#      BAD_PER_DOMAIN (25), SLOW_DELAY (0.5 s), THROTTLE (5/s), ROUNDS (2),
#      KINDS (which of "slow fail thr" run B adds; default all three),
#      SK_ARGS (more serve options), BENCH_DIR (scratch, default /tmp),
#      LOGS (a directory to keep each run's serve log in).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
SMTPKIT=$BUILD/smtpkit
[ -x "$SMTPKIT" ] || { echo "wide_queue: no $SMTPKIT; build first" >&2; exit 66; }
ROUNDS=${ROUNDS:-2}
SLOW_DELAY=${SLOW_DELAY:-0.5}
SK_ARGS=${SK_ARGS:-}
BENCH_NAME=wide-queue
# shellcheck source-path=SCRIPTDIR source=postfix_lib.sh
. "$HERE/postfix_lib.sh"
WQ="$PY $HERE/wide_queue.py"
# Longest wait for a run's healthy mail, in seconds.
RUN_TIMEOUT=600

# shellcheck disable=SC2046
cc -O2 -o "$TMP/wide_fill" "$HERE/wide_fill.c" "$HERE/fill_common.c" -I"$HERE/../include" \
    -L"$BUILD" -Wl,-rpath,"$BUILD" -lsmtpkit $(pkg-config --cflags --libs libevent)
$WQ plan "$TMP" >&2

# One port free on every address the MX hosts use (--mx-port is one port).
MX_PORT=$($PY - <<'EOF'
import socket
ips = ["127.0.0.%d" % i for i in [1, 2, 3] + list(range(10, 18)) + list(range(20, 24)) + [30, 31]]
for _ in range(100):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    ok = True
    for ip in ips:
        t = socket.socket()
        try:
            t.bind((ip, port))
        except OSError:
            ok = False
        t.close()
    if ok:
        print(port)
        break
EOF
)
[ -n "$MX_PORT" ] || { echo "wide_queue: no port free on every address" >&2; exit 1; }

$WQ dns "$TMP/zone.json" >"$TMP/dns.port" 2>"$TMP/dns.log" &
STARTED+=("$!")
for _ in $(seq 1 200); do [ -s "$TMP/dns.port" ] && break; sleep 0.05; done
DNS_PORT=$(head -n 1 "$TMP/dns.port")
[ -n "$DNS_PORT" ] || { echo "DNS server did not start" >&2; cat "$TMP/dns.log" >&2; exit 1; }

# The peers that stay up for the whole benchmark: slow, failing, throttled.
$PY -u "$HERE/wide_queue.py" slow "$MX_PORT" "$SLOW_DELAY" 127.0.0.{10..17} >"$TMP/slow.out" 2>&1 &
STARTED+=("$!")
for ip in 127.0.0.{20..23}; do
    "$SINK" -r RCPT -u nobody -4 "$ip:$MX_PORT" 256 >/dev/null 2>&1 &
    STARTED+=("$!")
done
for ip in 127.0.0.{30..31}; do
    "$SINK" -u nobody -4 "$ip:$MX_PORT" 256 >/dev/null 2>&1 &
    STARTED+=("$!")
done
for ip in 127.0.0.{10..17} 127.0.0.{20..23} 127.0.0.{30..31}; do wait_port "$MX_PORT" "$ip"; done
read -r -a LIMITS <"$TMP/rate_limits"
RATE_ARGS=()
for l in "${LIMITS[@]}"; do RATE_ARGS+=(--rate-limit "$l"); done
N_HEALTHY=$(wc -l <"$TMP/rcpt.A")

# run KIND ROUND: fill a spool with rcpt.KIND, start the healthy sinks and
# serve on it, wait for every healthy message; prints the report line.
run() {
    local kind=$1 r=$2 dir=$TMP/run.$1.$2 sinks=() dumps=() i ip
    mkdir -p "$dir"
    "$TMP/wide_fill" "$dir/data" <"$TMP/rcpt.$kind" >/dev/null
    sync
    for i in 1 2 3; do
        ip=127.0.0.$i
        mkdir -p "$dir/dump$i"
        chown nobody "$dir/dump$i"
        "$SINK" -d "$dir/dump$i/m" -u nobody -4 "$ip:$MX_PORT" 256 >/dev/null 2>&1 &
        sinks+=("$!")
        STARTED+=("$!")
        dumps+=("$dir/dump$i")
    done
    for i in 1 2 3; do wait_port "$MX_PORT" "127.0.0.$i"; done
    local port t0 pid
    port=$(free_port)
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$SMTPKIT" serve --data-dir "$dir/data" --listen "127.0.0.1:$port" --hostname wide.test \
        --dns-server "127.0.0.1:$DNS_PORT" --mx-port "$MX_PORT" --retry-schedule 5s \
        "${RATE_ARGS[@]}" $SK_ARGS 2>"$dir/serve.log" &
    pid=$!
    STARTED+=("$pid")
    local waited=0
    while [ "$(find "${dumps[@]}" -type f | wc -l)" -lt "$N_HEALTHY" ]; do
        kill -0 "$pid" 2>/dev/null || { echo "serve exited" >&2; tail "$dir/serve.log" >&2; exit 1; }
        sleep 0.2
        waited=$((waited + 1))
        [ "$waited" -lt $((RUN_TIMEOUT * 5)) ] || { echo "run $kind $r: timed out" >&2; exit 1; }
    done
    # What was still queued when the last healthy message went (B: the
    # slow, failing and throttled mail left), from the daemon's table.
    local queued
    queued=$("$SMTPKIT" queue --data-dir "$dir/data" summary 2>/dev/null | head -1 || true)
    stop_pid "$pid"
    for i in "${sinks[@]}"; do stop_pid "$i"; done
    echo "$kind $r $($WQ report "$t0" "$N_HEALTHY" "${dumps[@]}") queue_at_end=[$queued]"
    if [ -n "${LOGS:-}" ]; then mkdir -p "$LOGS" && cp "$dir/serve.log" "$LOGS/serve.$kind.$r.log"; fi
    set_aside "$dir"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "sizes: DOMAINS=${DOMAINS:-10000} PER_DOMAIN=${PER_DOMAIN:-2} ($N_HEALTHY healthy messages)," \
    "B adds BAD_DOMAINS=${BAD_DOMAINS:-40} x BAD_PER_DOMAIN=${BAD_PER_DOMAIN:-25} of each of slow" \
    "(delay ${SLOW_DELAY}s), 4xx, throttled (${THROTTLE:-5/s}); kinds: ${KINDS:-slow fail thr}" >&2
RESULTS=$TMP/results
: >"$RESULTS"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
    for k in $order; do
        line=$(run "$k" "$r")
        echo "$line" >&2
        echo "$line" >>"$RESULTS"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

$PY - "$RESULTS" <<'EOF'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    kind, r = line.split()[:2]
    runs.setdefault(kind, {})[int(r)] = dict(re.findall(r"(\w+)=([\d.]+)", line))
print("| round | A healthy msg/s | B healthy msg/s | B/A | A from first delivery | B from first delivery | B/A | A p50/p95/max s | B p50/p95/max s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
ratios = []
for r in sorted(runs["A"]):
    a, b = runs["A"][r], runs["B"][r]
    ra = float(b["rate"]) / float(a["rate"])
    rf = float(b["rate_from_first"]) / float(a["rate_from_first"])
    ratios.append(ra)
    print("| %d | %s | %s | %.2f | %s | %s | %.2f | %s / %s / %s | %s / %s / %s |" % (
        r, a["rate"], b["rate"], ra, a["rate_from_first"], b["rate_from_first"], rf,
        a["p50"], a["p95"], a["max"], b["p50"], b["p95"], b["max"]))
print("median B/A healthy rate: %.2f (target >= 0.90)" % statistics.median(ratios))
EOF
