#!/bin/bash
# Sending benchmark: (1) N small messages over one connection through the
# client library (examples/bulk_send) against Postfix's smtp-source doing the
# same, both into smtp-sink; (2) per-message wall time of `smtpkit send`
# against msmtp and curl sending the same prepared message to smtp-sink.
# Usage: bench/send_bench.sh [BUILD_DIR]; SEND_BENCH_MESSAGES (default 10000),
# SEND_BENCH_SIZE (octets, default 300), SEND_BENCH_RUNS (default 5).
# Loopback only; smtp-sink is stopped by PID on exit.
set -euo pipefail

BUILD=$(cd "${1:-build}" && pwd)
N=${SEND_BENCH_MESSAGES:-10000}
SIZE=${SEND_BENCH_SIZE:-300}
RUNS=${SEND_BENCH_RUNS:-5}
SMTPKIT="$BUILD/smtpkit"
BULK="$BUILD/example_bulk_send"
for tool in /usr/sbin/smtp-sink /usr/sbin/smtp-source hyperfine msmtp curl "$SMTPKIT" "$BULK"; do
    command -v "$tool" >/dev/null || { echo "send_bench: $tool is missing" >&2; exit 69; }
done

TMP=$(mktemp -d /tmp/sk-send-bench.XXXXXX)
SINK_PIDS=()
cleanup() {
    for pid in "${SINK_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
SINK_USER=()
[ "$(id -u)" = 0 ] && SINK_USER=(-u nobody)
# start_sink PORT [OPTIONS]: -m lets it hold more sessions than hyperfine
# opens in a row.
start_sink() {
    local port=$1
    shift
    /usr/sbin/smtp-sink -4 "${SINK_USER[@]}" -m 512 "$@" "127.0.0.1:$port" 256 &
    SINK_PIDS+=($!)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
        sleep 0.05
    done
    echo "send_bench: smtp-sink did not start on port $port" >&2
    exit 69
}
PORT=$(free_port)
start_sink "$PORT"
# smtp-source cannot pipeline; a sink that does not offer PIPELINING makes
# the library send one command at a time too, for a like-for-like row.
NOPIPE_PORT=$(free_port)
start_sink "$NOPIPE_PORT" -p

# The same small message for every client.
{
    printf 'From: Bench <sender@example.org>\r\nTo: rcpt@example.net\r\n'
    printf 'Subject: benchmark\r\nMessage-ID: <bench@example.org>\r\n\r\n'
    head -c "$SIZE" /dev/zero | tr '\0' 'x' | fold -w 76 | sed 's/$/\r/'
} >"$TMP/msg.eml"

# field FILE INDEX KEY: one value of hyperfine's JSON export.
field() {
    /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["results"][int(sys.argv[2])][sys.argv[3]])' "$@"
}
mean() { field "$1" "$2" mean; }
stddev() { field "$1" "$2" stddev; }

echo "== Bulk: $N messages of $SIZE octets over one connection, $RUNS runs"
BULK_CMD="$BULK 127.0.0.1 $PORT $N $SIZE"
BULK_NOPIPE_CMD="$BULK 127.0.0.1 $NOPIPE_PORT $N $SIZE"
SOURCE_CMD="/usr/sbin/smtp-source -d -s 1 -m $N -l $SIZE -f sender@example.org -t rcpt@example.net 127.0.0.1:$PORT"
hyperfine -S none --warmup 1 --runs "$RUNS" --export-json "$TMP/bulk.json" \
    -n libsmtpkit "$BULK_CMD" -n smtp-source "$SOURCE_CMD" \
    -n "libsmtpkit, no PIPELINING" "$BULK_NOPIPE_CMD"
LIB=$(mean "$TMP/bulk.json" 0)
SRC=$(mean "$TMP/bulk.json" 1)
NOPIPE=$(mean "$TMP/bulk.json" 2)

echo "== One message per process: smtpkit send vs msmtp vs curl, $((RUNS * 10)) runs"
SEND_CMD="$SMTPKIT send --server 127.0.0.1:$PORT --tls none --from sender@example.org --to rcpt@example.net --message $TMP/msg.eml"
MSMTP_CMD="msmtp --host=127.0.0.1 --port=$PORT --tls=off --auth=off --from=sender@example.org rcpt@example.net"
CURL_CMD="curl -sS --url smtp://127.0.0.1:$PORT --mail-from sender@example.org --mail-rcpt rcpt@example.net --upload-file $TMP/msg.eml"
# msmtp reads the message from stdin: every command runs through the shell,
# whose start-up hyperfine measures and subtracts.
hyperfine --warmup 3 --runs "$((RUNS * 10))" --export-json "$TMP/one.json" \
    -n "smtpkit send" "$SEND_CMD" -n msmtp "$MSMTP_CMD < $TMP/msg.eml" -n curl "$CURL_CMD"

ms() { awk -v s="$1" 'BEGIN { printf "%.2f", s * 1000 }'; }
echo
echo "## Sending results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
echo
echo "| bulk, $N x $SIZE B, one connection | mean | messages/s |"
echo "| --- | --- | --- |"
echo "| libsmtpkit (examples/bulk_send) | $(ms "$LIB") ms ± $(ms "$(stddev "$TMP/bulk.json" 0)") | $(awk -v n="$N" -v t="$LIB" 'BEGIN { printf "%.0f", n / t }') |"
echo "| smtp-source -d -s 1 | $(ms "$SRC") ms ± $(ms "$(stddev "$TMP/bulk.json" 1)") | $(awk -v n="$N" -v t="$SRC" 'BEGIN { printf "%.0f", n / t }') |"
echo "| libsmtpkit, sink without PIPELINING | $(ms "$NOPIPE") ms ± $(ms "$(stddev "$TMP/bulk.json" 2)") | $(awk -v n="$N" -v t="$NOPIPE" 'BEGIN { printf "%.0f", n / t }') |"
echo
echo "ratio smtp-source time / libsmtpkit time: $(awk -v a="$SRC" -v b="$LIB" 'BEGIN { printf "%.2f", a / b }') (above 1: the library is faster)"
echo "ratio without PIPELINING: $(awk -v a="$SRC" -v b="$NOPIPE" 'BEGIN { printf "%.2f", a / b }')"
echo
echo "| one message per process | mean |"
echo "| --- | --- |"
for i in 0 1 2; do
    echo "| $(field "$TMP/one.json" "$i" command) | $(ms "$(mean "$TMP/one.json" "$i")") ms ± $(ms "$(stddev "$TMP/one.json" "$i")") |"
done
