#!/bin/bash
# A/B benchmark of two builds of smtpkit in one run, for changes that must
# not cost speed (restructurings): durable acceptance (smtp-source ->
# `smtpkit serve --hold`) and relaying (smtp-source -> `smtpkit serve` ->
# smtp-sink, MX through a loopback DNS server), the two builds alternated
# ROUNDS times so that a noisy machine hits both alike. Prints the median
# rate of each and the ratio B/A, with every round's figures.
# Everything on loopback, free ports; every process started is stopped by PID.
# Usage: bench/ab_bench.sh BUILD_A BUILD_B
# Env: ROUNDS (default 5), MSGS (default 3000), SESSIONS (default 20),
#      LEN (default 1024).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 2 ] || { echo "usage: bench/ab_bench.sh BUILD_A BUILD_B" >&2; exit 64; }
A=$(cd "$1" && pwd)/smtpkit
B=$(cd "$2" && pwd)/smtpkit
for bin in "$A" "$B"; do
    [ -x "$bin" ] || { echo "ab_bench: no program $bin" >&2; exit 66; }
done
ROUNDS=${ROUNDS:-5}
MSGS=${MSGS:-3000}
SESSIONS=${SESSIONS:-20}
LEN=${LEN:-1024}
SOURCE=/usr/sbin/smtp-source
SINK=/usr/sbin/smtp-sink
DNS=$HERE/../tests/integration/dns_server.py
BENCH_NAME=ab_bench
# shellcheck source-path=SCRIPTDIR source=bench_lib.sh
. "$HERE/bench_lib.sh"

cat >"$TMP/zone.json" <<'EOF'
{"sink.test": {"MX": [[10, "mx.sink.test"]]}, "mx.sink.test": {"A": ["127.0.0.1"]}}
EOF
$PY "$DNS" "$TMP/zone.json" >"$TMP/dns.port" 2>"$TMP/dns.log" &
STARTED+=("$!")
for _ in $(seq 1 100); do [ -s "$TMP/dns.port" ] && break; sleep 0.05; done
DNS_PORT=$(head -n 1 "$TMP/dns.port")

# inject PORT -> messages per second of smtp-source alone (every message
# acknowledged means on disk).
inject() {
    local t0 t1
    t0=$(date +%s.%N)
    "$SOURCE" -d -s "$SESSIONS" -m "$MSGS" -l "$LEN" -f sender@bench.test \
        -t "${2:-rcpt@localhost}" -M client.test "127.0.0.1:$1"
    t1=$(date +%s.%N)
    $PY -c "print('%.0f' % ($MSGS / ($t1 - $t0)))"
}

# accept BIN -> durable acceptance rate into the hold queue.
accept() {
    local port pid rate
    rm -rf "$TMP/sk"
    port=$(free_port)
    "$1" serve --data-dir "$TMP/sk" --listen "127.0.0.1:$port" --hold \
        --max-connections 20000 --max-connections-per-ip 20000 2>"$TMP/sk.log" &
    pid=$!
    STARTED+=("$pid")
    wait_port "$port"
    rate=$(inject "$port")
    stop_pid "$pid"
    echo "$rate"
}

# relay BIN -> end-to-end rate: from the start of the injection until the
# sink has counted every message.
relay() {
    local sport spid port pid
    rm -rf "$TMP/sk"
    sport=$(free_port)
    "$SINK" -c -u nobody -4 "127.0.0.1:$sport" 1024 >"$TMP/sink.out" 2>&1 &
    spid=$!
    STARTED+=("$spid")
    wait_port "$sport"
    port=$(free_port)
    "$1" serve --data-dir "$TMP/sk" --listen "127.0.0.1:$port" --hostname relay.test \
        --dns-server "127.0.0.1:$DNS_PORT" --mx-port "$sport" \
        --max-connections 20000 --max-connections-per-ip 20000 2>"$TMP/sk.log" &
    pid=$!
    STARTED+=("$pid")
    wait_port "$port"
    $PY - "$TMP/sink.out" "$MSGS" "$SESSIONS" "$LEN" "$port" "$SOURCE" <<'EOF'
import re, subprocess, sys, time
out, n, sess, length, port, source = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
def count():
    with open(out, "rb") as f:
        m = re.findall(rb"mesg=(\d+)", f.read()[-200:])
    return int(m[-1]) if m else 0
t0 = time.monotonic()
subprocess.run([source, "-d", "-s", sess, "-m", str(n), "-l", length, "-f", "sender@bench.test",
                "-t", "rcpt@sink.test", "-M", "client.test", "127.0.0.1:" + port],
               check=True, timeout=600)
while count() < n:
    if time.monotonic() - t0 > 600:
        sys.exit("sink counted %d of %d" % (count(), n))
    time.sleep(0.005)
print("%.0f" % (n / (time.monotonic() - t0)))
EOF
    stop_pid "$pid"
    stop_pid "$spid"
}

echo "A=$A" >&2
echo "B=$B" >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
: >"$TMP/results"
for r in $(seq 1 "$ROUNDS"); do
    # Alternate which build goes first, so neither always meets a warmer cache.
    if [ $((r % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
    for w in $order; do
        bin=$A
        [ "$w" = B ] && bin=$B
        acc=$(accept "$bin")
        rel=$(relay "$bin")
        echo "$r $w $acc $rel" >>"$TMP/results"
        echo "round $r $w: acceptance ${acc}/s relay ${rel}/s" >&2
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

$PY - "$TMP/results" "$LEN" "$SESSIONS" "$MSGS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
length, sessions, msgs = sys.argv[2:5]
def med(w, col):
    return statistics.median(float(r[col]) for r in rows if r[1] == w)
print("| measure (%s B, %s sessions, %s messages) | A msg/s | B msg/s | B/A |" % (length, sessions, msgs))
print("| --- | --- | --- | --- |")
for name, col in (("durable acceptance", 2), ("relay end to end", 3)):
    a, b = med("A", col), med("B", col)
    print("| %s | %.0f | %.0f | %.2f |" % (name, a, b, b / a))
rounds = {}
for r in rows:
    rounds.setdefault(r[0], {})[r[1]] = r
print("\nper round, B/A: acceptance %s; relay %s" % (
    " ".join("%.2f" % (float(v["B"][2]) / float(v["A"][2])) for v in rounds.values()),
    " ".join("%.2f" % (float(v["B"][3]) / float(v["A"][3])) for v in rounds.values())))
EOF
