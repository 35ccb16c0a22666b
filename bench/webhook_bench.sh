#!/bin/bash
# Webhook delivery throughput of `smtpkit serve` (docs/webhooks.md) to a
# local receiver (bench/webhook_receiver.py: asyncio, HTTP/1.1 keep-alive,
# 200 at once), in events per second from the first to the last event the
# receiver gets. Everything on loopback, free ports; every process started
# is stopped by PID.
#
# 1. The receiver alone, under wrk (keep-alive, CONNS connections): its own
#    ceiling, so that the figures below are the server's, not the receiver's.
# 2. MSGS messages through `smtpkit serve` to a Maildir (smtp-source, 20
#    sessions): three tracked events each (received, queued, delivered),
#    with no endpoint yet.
# 3. ROUNDS times: the outbox filled with one row per event for an endpoint
#    on a new receiver (the rows the tracking store writes when the endpoint
#    exists: src/track/outbox.c), serve started with that endpoint, the
#    backlog sent; the receiver reports the rate. Then one live run: serve
#    with the endpoint from the start, MSGS more messages injected, the rate
#    over the events as they happen (bounded by the injection).
# Usage: bench/webhook_bench.sh [BUILD_DIR]
# Env: MSGS (default 5000), ROUNDS (default 3), CONNS (wrk's connections,
#      default 32), SK_ARGS (more `smtpkit serve` options), BENCH_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
SK=$BUILD/smtpkit
[ -x "$SK" ] || { echo "webhook_bench: no program $SK" >&2; exit 66; }
MSGS=${MSGS:-5000}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
SK_ARGS=${SK_ARGS:-}
SOURCE=/usr/sbin/smtp-source
RECV=$HERE/webhook_receiver.py
SECRET="whsec_$(head -c 32 /dev/urandom | base64)"
BENCH_NAME=webhook_bench
# shellcheck source-path=SCRIPTDIR source=bench_lib.sh
. "$HERE/bench_lib.sh"

# receiver EXPECT -> starts one; sets RPID and RPORT; its report goes to
# $TMP/recv.json.
receiver() {
    rm -f "$TMP/recv.port" "$TMP/recv.json"
    $PY "$RECV" "$TMP/recv.port" "$1" >"$TMP/recv.json" &
    RPID=$!
    STARTED+=("$RPID")
    for _ in $(seq 1 100); do [ -s "$TMP/recv.port" ] && break; sleep 0.05; done
    RPORT=$(cat "$TMP/recv.port")
}

# serve ARGS... -> starts smtpkit serve on the data directory; sets SPID, SPORT.
serve() {
    SPORT=$(free_port)
    # shellcheck disable=SC2086
    "$SK" serve --data-dir "$TMP/data" --listen "127.0.0.1:$SPORT" --hostname bench.test \
        --local-domain bench.test --max-connections 20000 --max-connections-per-ip 20000 \
        $SK_ARGS "$@" 2>>"$TMP/serve.log" &
    SPID=$!
    STARTED+=("$SPID")
    wait_port "$SPORT"
}

inject() {
    "$SOURCE" -d -s 20 -m "$MSGS" -l 1024 -f sender@client.test -t "rcpt@bench.test" \
        -M client.test "127.0.0.1:$SPORT"
}

delivered() {
    "$SK" stats --data-dir "$TMP/data" --json |
        $PY -c 'import json,sys; print(json.load(sys.stdin)["last_hour"]["by_outcome"]["delivered"])'
}

wait_delivered() {
    for _ in $(seq 1 1200); do
        [ "$(delivered)" -ge "$1" ] && return 0
        sleep 0.1
    done
    echo "webhook_bench: $(delivered) of $1 deliveries tracked" >&2
    return 1
}

# wait_receiver -> the receiver's report (it exits when it has them all).
wait_receiver() {
    for _ in $(seq 1 1200); do
        kill -0 "$RPID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$RPID" 2>/dev/null; then
        stop_pid "$RPID"
        echo "webhook_bench: the receiver did not get every event: $(cat "$TMP/recv.json")" >&2
        tail -n 20 "$TMP/serve.log" >&2
        return 1
    fi
    wait "$RPID" 2>/dev/null || true
    cat "$TMP/recv.json"
}

echo "machine: $(nproc) processors, shared with other work; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. The receiver alone.
receiver 0
cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("x", 380)
wrk.headers["Content-Type"] = "application/json"
wrk.headers["webhook-id"] = "evt_1"
EOF
alone=$(wrk -t1 -c"$CONNS" -d5s -s "$TMP/post.lua" "http://127.0.0.1:$RPORT/hook" |
    awk '/Requests\/sec/ {printf "%.0f", $2}')
stop_pid "$RPID"
echo "receiver alone (wrk, $CONNS connections, 5 s): $alone requests/s"

# 2. The events, with no endpoint.
serve
inject
wait_delivered "$MSGS"
stop_pid "$SPID"
events=$(sqlite3 "$TMP/data/track.db" "SELECT count(*) FROM events")
echo "$MSGS messages, $events events in the tracking store"

# 3. The backlog, ROUNDS times.
: >"$TMP/rates"
for r in $(seq 1 "$ROUNDS"); do
    receiver "$events"
    url="http://127.0.0.1:$RPORT/hook"
    sqlite3 "$TMP/data/track.db" <<EOF
DELETE FROM webhook_outbox;
DELETE FROM webhook_endpoints;
INSERT INTO webhook_endpoints (url, secret, events, source, created_ms)
  VALUES ('$url', '$SECRET', '*', 'config', 0);
INSERT INTO webhook_outbox (endpoint, event_id, msg_key, next_ms, created_ms)
  SELECT '$url', id, coalesce(queue_id, message_id, ''), 0,
         CAST(strftime('%s', 'now') AS INTEGER) * 1000 FROM events ORDER BY id;
EOF
    t0=$(date +%s.%N)
    serve --webhook "$url $SECRET"
    rep=$(wait_receiver)
    t1=$(date +%s.%N)
    stop_pid "$SPID"
    rate=$(echo "$rep" | $PY -c 'import json,sys; print(json.load(sys.stdin)["per_second"])')
    echo "$rate" >>"$TMP/rates"
    echo "round $r: backlog of $events events: $rate events/s (first to last; $rep);" \
        "$(
            $PY -c "print('%.2f' % ($t1 - $t0))"
        ) s from the start of serve"
done

# 4. Live: the endpoint from the start, MSGS more messages.
receiver $((3 * MSGS))
url="http://127.0.0.1:$RPORT/hook"
serve --webhook "$url $SECRET"
t0=$(date +%s.%N)
inject
t1=$(date +%s.%N)
rep=$(wait_receiver)
stop_pid "$SPID"
echo "live: $((3 * MSGS)) events of $MSGS messages injected in $(
    $PY -c "print('%.2f' % ($t1 - $t0))"
) s: $(echo "$rep" | $PY -c 'import json,sys; print(json.load(sys.stdin)["per_second"])') events/s ($rep)"

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$TMP/rates" <<'EOF'
import statistics, sys
rates = [float(l) for l in open(sys.argv[1]) if l.strip() not in ("", "None")]
print("backlog: median %.0f events/s over %d rounds (%s); target 5000" %
      (statistics.median(rates), len(rates), ", ".join("%.0f" % r for r in rates)))
EOF
