#!/bin/bash
# Relaying benchmark, end to end: Postfix's smtp-source -> the relay ->
# Postfix's smtp-sink, for `smtpkit serve` (MX found through a loopback DNS
# server, tests/integration/dns_server.py) and for a private Postfix
# instance (relayhost = [127.0.0.1]:SINKPORT, see docs/BENCHMARKS.md), one
# after the other in one run. Both keep their queues durable (fsync before
# 250). The rate is N / (time from starting the injection until smtp-sink
# has counted all N messages). In the same run, SMTPKit's durable
# acceptance (`smtpkit serve --hold`, the same injection, the rate of the
# 250s) for the ratio of what comes out to what goes in. Everything on
# loopback, free ports; every process started here is stopped by PID.
# Usage: bench/relay_bench.sh [BUILD_DIR]
# Env: MSGS (default 5000), SESSIONS (default "20"), LEN (default 1024),
#      SK_ARGS (extra `smtpkit serve` options), PERF_OUT (perf record of
#      the daemon per session count, to PERF_OUT.SESSIONS).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
MSGS=${MSGS:-5000}
SESSIONS=${SESSIONS:-"20"}
LEN=${LEN:-1024}
SK_ARGS=${SK_ARGS:-}
DNS=$HERE/../tests/integration/dns_server.py
BENCH_NAME=relay-bench
# shellcheck source-path=SCRIPTDIR source=postfix_lib.sh
. "$HERE/postfix_lib.sh"

# --- the DNS server: sink.test's MX is 127.0.0.1 (the sink's port is --mx-port)
cat >"$TMP/zone.json" <<'EOF'
{"sink.test": {"MX": [[10, "mx.sink.test"]]}, "mx.sink.test": {"A": ["127.0.0.1"]}}
EOF
$PY "$DNS" "$TMP/zone.json" >"$TMP/dns.port" 2>"$TMP/dns.log" &
DNS_PID=$!
STARTED+=("$DNS_PID")
for _ in $(seq 1 100); do [ -s "$TMP/dns.port" ] && break; sleep 0.05; done
DNS_PORT=$(head -n 1 "$TMP/dns.port")
[ -n "$DNS_PORT" ] || { echo "DNS server did not start" >&2; cat "$TMP/dns.log" >&2; exit 1; }

# --- the sink counts messages ("mesg=N" on stdout with -c); smtpkit serve
# and a private Postfix (receive, queue with fsync, relay) deliver to it ----
SINK_PORT=0
SINK_PID=0
setup_postfix <<'EOF'
smtp_tls_security_level = none
EOF

# --- one measurement ---------------------------------------------------------
# relay_run SESSIONS -> prints "RATE INJECT_RATE": end-to-end messages per
# second, and the injection rate (smtp-source alone) for reference.
relay_run() {
    $PY - "$TMP/sink.out" "$MSGS" "$1" "$LEN" "$PORT" "$SOURCE" <<'EOF'
import re, subprocess, sys, time
out, n, sess, length, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
def count():
    with open(out, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 200))
        m = re.findall(rb"mesg=(\d+)", f.read())
    return int(m[-1]) if m else 0
base = count()
t0 = time.monotonic()
subprocess.run([source, "-d", "-s", sess, "-m", str(n), "-l", length, "-f", "sender@bench.test",
                "-t", "rcpt@sink.test", "-M", "client.test", "127.0.0.1:" + port],
               check=True, timeout=600)
t_inj = time.monotonic() - t0
deadline = t0 + 600
while count() - base < n:
    if time.monotonic() > deadline:
        sys.exit("sink counted %d of %d" % (count() - base, n))
    time.sleep(0.005)
t = time.monotonic() - t0
print("%.0f %.0f" % (n / t, n / t_inj))
EOF
}

# hold_run SESSIONS -> prints the injection rate into a daemon that only
# keeps the mail (--hold): SMTPKit's durable acceptance.
hold_run() {
    $PY - "$MSGS" "$1" "$LEN" "$PORT" "$SOURCE" <<'EOF'
import subprocess, sys, time
n, sess, length, port, source = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
t0 = time.monotonic()
subprocess.run([source, "-d", "-s", sess, "-m", str(n), "-l", length, "-f", "sender@bench.test",
                "-t", "rcpt@sink.test", "-M", "client.test", "127.0.0.1:" + port],
               check=True, timeout=600)
print("%.0f" % (n / (time.monotonic() - t0)))
EOF
}

RESULTS=$TMP/results
: >"$RESULTS"
for S in $SESSIONS; do
    start_sink SINK_PORT SINK_PID -c >"$TMP/sink.out" 2>&1
    # shellcheck disable=SC2086
    start_smtpkit --hostname relay.test --dns-server "127.0.0.1:$DNS_PORT" \
        --mx-port "$SINK_PORT" $SK_ARGS
    PERF_PID=0
    if [ -n "${PERF_OUT:-}" ]; then
        # Profile the daemon during this run (perf report -i PERF_OUT.S).
        perf record -q -g -p "$SERVER_PID" -o "$PERF_OUT.$S" 2>/dev/null &
        PERF_PID=$!
    fi
    read -r sk_rate sk_inj < <(relay_run "$S")
    if [ "$PERF_PID" -ne 0 ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
    stop_smtpkit
    stop_pid "$SINK_PID"

    start_sink SINK_PORT SINK_PID -c >"$TMP/sink.out" 2>&1
    start_postfix "relayhost = [127.0.0.1]:$SINK_PORT"
    read -r pf_rate pf_inj < <(relay_run "$S")
    stop_postfix
    stop_pid "$SINK_PID"

    # shellcheck disable=SC2086
    start_smtpkit --hostname relay.test --hold $SK_ARGS
    read -r sk_hold < <(hold_run "$S")
    stop_smtpkit

    echo "$S $sk_rate $sk_inj $pf_rate $pf_inj $sk_hold" >>"$RESULTS"
    echo "sessions=$S: smtpkit ${sk_rate}/s (injection ${sk_inj}/s)" \
         "postfix ${pf_rate}/s (injection ${pf_inj}/s) smtpkit --hold ${sk_hold}/s" >&2
done

echo
echo "| message | sessions | messages | smtpkit msg/s | Postfix msg/s | smtpkit/Postfix | smtpkit injection msg/s | Postfix injection msg/s | smtpkit durable acceptance msg/s | relay/acceptance |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
while read -r s sk ski pf pfi hold; do
    $PY -c "
print('| %d B | %d | %d | %d | %d | %.2f | %d | %d | %d | %.2f |' % ($LEN, $s, $MSGS, $sk, $pf, $sk / $pf, $ski, $pfi, $hold, $sk / $hold))"
done <"$RESULTS"
