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
        start_smtpkit --hold
        sk_rate=$(run_source "$S" "$MSGS" "$LEN" rcpt@localhost)
        sk_hwm=$(hwm_kb "$SERVER_PID")
        sk_held=$(count_held_smtpkit)
        stop_smtpkit

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
        echo "size=$LEN sessions=$S: smtpkit ${sk_rate}/s postfix ${pf_rate}/s sink ${sink_rate}/s" >&2
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
echo
echo "| message | sessions | messages | smtpkit msg/s | Postfix msg/s | smtpkit/Postfix | smtp-sink msg/s | smtpkit/sink | peak RSS smtpkit | peak RSS Postfix (sum) | Postfix/smtpkit RSS |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
while read -r len s msgs sk pf sink skh pfh sinkh; do
    $PY -c "
len, s, msgs, sk, pf, sink, skh, pfh = $len, $s, $msgs, $sk, $pf, $sink, $skh, $pfh
size = '1 KiB' if len == 1024 else '100 KiB'
print('| %s | %d | %d | %d | %d | %.2f | %d | %.2f | %.1f MiB | %.1f MiB | %.1f |' % (
    size, s, msgs, sk, pf, sk / pf, sink, sk / sink, skh / 1024, pfh / 1024, pfh / skh))"
done <"$RESULTS"
echo
echo "Load before: $LOAD_BEFORE"
echo "Load after:  $(uptime)"
echo "Idle connections: $conns to smtpkit serve; VmRSS $before kB before, $after kB after:" \
     "$per_conn KiB per connection (target < 32 KiB)."
