#!/bin/bash
# Injection over the HTTP API against injection over SMTP, into the same
# `smtpkit serve --hold` in one run (docs/BENCHMARKS.md "HTTP API
# injection"): 1 KiB messages, 20 concurrent clients on each side.
#
# SMTP: Postfix's smtp-source, 20 sessions, MSGS messages of 1024 octets of
#   body (`-l 1024`), one recipient each.
# HTTP: wrk, 20 keep-alive connections (2 threads), DURATION seconds of
#   POST /v1/messages/raw with a prepared message of the same header lines
#   and the same 1024 octets of body as smtp-source sends, one recipient
#   (bench/http_bench.lua). /raw because it is the same work as SMTP's
#   DATA: a prepared message to the spool; POST /v1/messages composes the
#   message first (Message-ID, Date, MIME), which SMTP injection never
#   does, so it is measured too (same text, 1 KiB) but as a second figure.
# ROUNDS rounds, each SMTP then raw then compose, so that the machine's
# drift (it is shared) hits all alike; medians and the ratios raw/SMTP and
# compose/SMTP. Every message of every run must be accepted (202 / 250):
# a run with a failed request stops the benchmark.
# Everything on loopback, free ports; every process started is stopped by
# PID. Usage: bench/http_bench.sh [BUILD_DIR]
# Env: MSGS (default 5000), DURATION (default 3), ROUNDS (default 3),
#      SK_ARGS (more `smtpkit serve` options), BENCH_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
SK=$BUILD/smtpkit
[ -x "$SK" ] || { echo "http_bench: no program $SK" >&2; exit 66; }
MSGS=${MSGS:-5000}
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-3}
SK_ARGS=${SK_ARGS:-}
CLIENTS=20
SOURCE=/usr/sbin/smtp-source
WRK=/usr/bin/wrk
for t in "$SOURCE" "$WRK"; do
    [ -x "$t" ] || { echo "http_bench: $t is missing (scripts/deps.sh installs it)" >&2; exit 69; }
done
BENCH_NAME=http_bench
# shellcheck source-path=SCRIPTDIR source=bench_lib.sh
. "$HERE/bench_lib.sh"
held() { find "$TMP/data/spool/msg" -name '*.msg' 2>/dev/null | wc -l; }
# With the spool's journal the files are written just after the answers:
# the count once it no longer moves.
settled() {
    local a b
    b=$(held)
    for _ in $(seq 1 100); do
        sleep 0.3
        a=$(held)
        [ "$a" -eq "$b" ] && break
        b=$a
    done
    echo "$b"
}

# The bodies: the message smtp-source sends (its header lines, then 1024
# octets of body in lines of 78 + CRLF), raw and to compose.
$PY - "$TMP" <<'PYEOF'
import json, sys
tmp = sys.argv[1]
lines, n = [], 0
while n < 1024:
    line = ("%d" % (len(lines) + 1) + "X" * 79)[:78]
    line = line[:max(0, min(78, 1024 - n - 2))]
    lines.append(line)
    n += len(line) + 2
text = "\r\n".join(lines) + "\r\n"
hdr = ("From: <sender@client.test>\r\nTo: <rcpt@bench.test>\r\n"
       "Date: Mon, 7 Dec 2026 12:00:00 +0000\r\n")
raw = {"envelope": {"from": "sender@client.test", "to": ["rcpt@bench.test"]},
       "message": hdr + "\r\n" + text}
compose = {"from": "sender@client.test", "to": ["rcpt@bench.test"], "text": text}
json.dump(raw, open(tmp + "/raw.json", "w"))
json.dump(compose, open(tmp + "/compose.json", "w"))
PYEOF

mkdir -p "$TMP/data"
KEY=$("$SK" apikey --data-dir "$TMP/data" create --name bench --scope send --json |
      $PY -c 'import json,sys; print(json.load(sys.stdin)["key"])')
SPORT=$(free_port)
HPORT=$(free_port)
# shellcheck disable=SC2086
"$SK" serve --data-dir "$TMP/data" --hold --listen "127.0.0.1:$SPORT" \
    --http "127.0.0.1:$HPORT" --hostname bench.test --local-domain bench.test \
    --max-connections 20000 --max-connections-per-ip 20000 $SK_ARGS 2>>"$TMP/serve.log" &
STARTED+=("$!")
wait_port "$SPORT"
wait_port "$HPORT"

# smtp -> messages per second
smtp() {
    local before t0 t1 after
    before=$(settled)
    t0=$(date +%s.%N)
    "$SOURCE" -d -s "$CLIENTS" -m "$MSGS" -l 1024 -f sender@client.test -t rcpt@bench.test \
        -M client.test "127.0.0.1:$SPORT"
    t1=$(date +%s.%N)
    after=$(settled)
    if [ $((after - before)) -ne "$MSGS" ]; then
        echo "http_bench: smtp-source: $((after - before)) of $MSGS messages held" >&2
        exit 1
    fi
    $PY -c "print('%.0f' % ($MSGS / ($t1 - $t0)))"
}

# http BODY -> messages per second (each request one message)
http() {
    local out
    out=$(SK_KEY=$KEY SK_BODY="$TMP/$1.json" "$WRK" -t 2 -c "$CLIENTS" -d "${DURATION}s" \
        -s "$HERE/http_bench.lua" "http://127.0.0.1:$HPORT/v1/messages${2:+/$2}" | tail -1)
    $PY - "$out" "$1" <<'PYEOF'
import json, sys
r = json.loads(sys.argv[1])
if r["non2xx"] or r["errors"] or not r["requests"]:
    sys.exit("http_bench: %s: failed requests: %r" % (sys.argv[2], r))
print("%.0f" % (r["requests"] / (r["duration_us"] / 1e6)))
PYEOF
}

echo "http_bench: $(nproc) processors, load: $(uptime | sed 's/.*load average: //')"
# A first run into a new spool is slower on both sides (new directory
# blocks and inodes): one short run of each first, not counted.
MSGS_WANTED=$MSGS
MSGS=$((MSGS / 5))
smtp >/dev/null
MSGS=$MSGS_WANTED
DURATION_WANTED=$DURATION
DURATION=1
http raw raw >/dev/null
http compose >/dev/null
DURATION=$DURATION_WANTED
R=$TMP/rounds
: >"$R"
for i in $(seq 1 "$ROUNDS"); do
    s=$(smtp)
    h=$(http raw raw)
    c=$(http compose)
    echo "round $i: smtp $s/s, http raw $h/s, http compose $c/s"
    echo "$s $h $c" >>"$R"
done
echo "http_bench: load after: $(uptime | sed 's/.*load average: //')"
$PY - "$R" <<'PYEOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
s, h, c = (statistics.median(col) for col in zip(*rows))
print("median of %d rounds: smtp-source %.0f msg/s, HTTP /raw %.0f msg/s (%.2fx), "
      "HTTP compose %.0f msg/s (%.2fx)" % (len(rows), s, h, h / s, c, c / s))
PYEOF
