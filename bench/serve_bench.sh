#!/bin/bash
# Receiving benchmark: Postfix's smtp-source against `smtpkit serve --hold`
# and against Postfix's own smtpd with its durable queue (a private
# instance configured here, mail held), with smtp-sink (no disk) as the
# ceiling; then the memory of 5,000 idle connections to smtpkit serve.
# Everything on loopback, on free ports; every process started here is
# stopped by PID. Usage: bench/serve_bench.sh [BUILD_DIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
MSGS_1K=${MSGS_1K:-2000}     # messages per run, 1 KiB each
MSGS_100K=${MSGS_100K:-500}  # messages per run, 100 KiB each
SESSIONS=${SESSIONS:-"1 20 100"}
ROUNDS=${ROUNDS:-3}          # rounds per row, the three receivers in turn
IDLE=${IDLE:-5000}           # idle connections for the memory figure
BENCH_NAME=serve-bench
# shellcheck source-path=SCRIPTDIR source=postfix_lib.sh
. "$HERE/postfix_lib.sh"

hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# Sum of VmHWM over a process and its children (Postfix: master + daemons).
tree_hwm_kb() {
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        [ -r "/proc/$p/status" ] && total=$((total + $(hwm_kb "$p")))
    done
    echo "$total"
}

# --- the receivers: smtpkit serve --hold, Postfix holding, smtp-sink -----
setup_postfix <<'EOF'
# Keep every message in the hold queue: received, written, fsync'd, not delivered.
smtpd_recipient_restrictions = check_recipient_access static:HOLD, permit
EOF
stop_sink() { stop_pid "$SERVER_PID"; }

# --- one measurement -----------------------------------------------------
# run_source SESSIONS MESSAGES LENGTH RCPT -> prints messages per second
run_source() {
    local t0 t1
    t0=$(date +%s.%N)
    "$SOURCE" -d -s "$1" -m "$2" -l "$3" -f sender@example.org -t "$4" "127.0.0.1:$PORT"
    t1=$(date +%s.%N)
    $PY -c "print('%.0f' % ($2 / ($t1 - $t0)))"
}

count_held_smtpkit() { ls "$TMP/sk/spool/msg" 2>/dev/null | grep -c '\.msg$' || true; }
count_held_postfix() { find "$PFX/queue/hold" -type f | wc -l; }

# The machine may be shared: record its load next to the figures.
LOAD_BEFORE=$(uptime)
RESULTS=$TMP/results
: >"$RESULTS"
for spec in "1024 $MSGS_1K" "102400 $MSGS_100K"; do
    set -- $spec
    LEN=$1 MSGS=$2
    for S in $SESSIONS; do
      # The receivers in turn, ROUNDS times: this machine's speed drifts
      # within seconds, so each round's ratio compares runs taken close
      # together, and the report gives the median of the rounds.
      for R in $(seq 1 "$ROUNDS"); do
        start_smtpkit --hold
        sk_rate=$(run_source "$S" "$MSGS" "$LEN" rcpt@localhost)
        sk_hwm=$(hwm_kb "$SERVER_PID")
        stop_smtpkit
        # After the stop: message files are written just after their 250
        # (docs/queue.md "The journal"), and a clean stop writes the rest.
        sk_held=$(count_held_smtpkit)

        start_postfix
        pf_rate=$(run_source "$S" "$MSGS" "$LEN" rcpt@example.net)
        pf_hwm=$(tree_hwm_kb "$SERVER_PID")
        sleep 0.5 # cleanup may still be writing the last queue file
        pf_held=$(count_held_postfix)
        stop_postfix

        start_sink PORT SERVER_PID
        sink_rate=$(run_source "$S" "$MSGS" "$LEN" rcpt@example.net)
        sink_hwm=$(hwm_kb "$SERVER_PID")
        stop_sink

        [ "$sk_held" = "$MSGS" ] || echo "warning: smtpkit held $sk_held of $MSGS" >&2
        [ "$pf_held" = "$MSGS" ] || echo "warning: postfix held $pf_held of $MSGS" >&2
        echo "$LEN $S $MSGS $sk_rate $pf_rate $sink_rate $sk_hwm $pf_hwm $sink_hwm" >>"$RESULTS"
        echo "size=$LEN sessions=$S round=$R: smtpkit ${sk_rate}/s postfix ${pf_rate}/s sink ${sink_rate}/s" >&2
      done
    done
done

# --- idle connections ------------------------------------------------------
ulimit -n $((IDLE * 2 + 1024))
start_smtpkit --hold
before=$(rss_kb "$SERVER_PID")
idle_out=$($PY - "$PORT" "$IDLE" "$SERVER_PID" <<'EOF'
import resource, socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1024, n + 1024))
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    socks.append(s)
# Every connection has its greeting (the server has set up the session).
for s in socks:
    if not s.recv(512).startswith(b"220"):
        sys.exit("no greeting")
time.sleep(1)
rss = [l for l in open("/proc/%s/status" % pid) if l.startswith("VmRSS:")][0].split()[1]
print(rss, len(socks))
EOF
)
stop_smtpkit
after=${idle_out% *}
conns=${idle_out#* }
per_conn=$($PY -c "print('%.1f' % (($after - $before) / $conns))")

# --- the report (markdown rows for docs/BENCHMARKS.md) ---------------------
# One row per message size and session count: the median of the rounds'
# rates and of their ratios, then each round's smtpkit/Postfix ratio.
echo
$PY - "$RESULTS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    length, s, msgs, sk, pf, sink, skh, pfh, sinkh = map(int, line.split())
    rows.setdefault((length, s), []).append((msgs, sk, pf, sink, skh, pfh))
print("| message | sessions | messages | rounds | smtpkit msg/s | Postfix msg/s | smtpkit/Postfix | each round | smtp-sink msg/s | smtpkit/sink | peak RSS smtpkit | peak RSS Postfix (sum) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
med = statistics.median
for (length, s), rs in rows.items():
    ratios = [sk / pf for _, sk, pf, _, _, _ in rs]
    sk, pf, sink = (med([r[i] for r in rs]) for i in (1, 2, 3))
    print("| %s | %d | %d | %d | %d | %d | **%.2f** | %s | %d | %.2f | %.1f MiB | %.1f MiB |" % (
        "1 KiB" if length == 1024 else "100 KiB", s, rs[0][0], len(rs), sk, pf, med(ratios),
        " ".join("%.2f" % x for x in ratios), sink, med([r[1] / r[3] for r in rs]),
        max(r[4] for r in rs) / 1024, max(r[5] for r in rs) / 1024))
EOF
echo
echo "Load before: $LOAD_BEFORE"
echo "Load after:  $(uptime)"
echo "Idle connections: $conns to smtpkit serve; VmRSS $before kB before, $after kB after:" \
     "$per_conn KiB per connection (target < 32 KiB)."
