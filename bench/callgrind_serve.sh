#!/bin/bash
# Instruction counts of `smtpkit serve` for a fixed run, under callgrind:
# a figure that, unlike a rate, hardly moves with the load of a shared
# machine, for comparing two builds of the same code.
#   relay: Postfix's smtp-source -> smtpkit serve -> smtp-sink (MX found
#          through a loopback DNS server, tests/integration/dns_server.py)
#   hold:  smtp-source -> smtpkit serve --hold (accepted, made durable, kept)
#   hold-rsa, hold-ed25519: hold with every message DKIM-signed (--dkim
#          with an RSA-2048 or an Ed25519 key from `smtpkit dkim keygen`;
#          smtp-source's From is in the key's domain)
# The count covers the whole life of the daemon (start, the messages, the
# stop on SIGTERM), every thread of it. Loopback only, free ports; every
# process started here is stopped by PID.
# Usage: bench/callgrind_serve.sh [BUILD_DIR]
# Env: MSGS (default 2000), SESSIONS (default 20), LEN (default 1024),
#      MODES (default "relay hold"; also hold-rsa, hold-ed25519),
#      BENCH_DIR (scratch, default /tmp),
#      CALLGRIND=0 to run the daemon without callgrind and print only the
#      rate (messages per second, the 250s for hold; noisy on a shared
#      machine); CG_KEEP=DIR copies each mode's callgrind output there
#      (cg.relay, cg.hold) for callgrind_annotate; with CALLGRIND=0,
#      PERF_STAT=1 runs the daemon under `perf stat` and prints its CPU
#      time and context switches per message (software counters, which a
#      virtual machine without hardware counters still has).
#      KEEP=1 keeps the scratch directory (the callgrind.out files)
#      for callgrind_annotate.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
MSGS=${MSGS:-2000}
SESSIONS=${SESSIONS:-20}
LEN=${LEN:-1024}
MODES=${MODES:-"relay hold"}
SMTPKIT=$BUILD/smtpkit
SOURCE=/usr/sbin/smtp-source
SINK=/usr/sbin/smtp-sink
PY=/usr/bin/python3
DNS=$HERE/../tests/integration/dns_server.py

[ -x "$SMTPKIT" ] || { echo "no $SMTPKIT; build first" >&2; exit 1; }
[ -x "$SOURCE" ] && [ -x "$SINK" ] || { echo "needs postfix (smtp-source, smtp-sink)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }

TMP=$(mktemp -d "${BENCH_DIR:-/tmp}/sk-callgrind-XXXXXX")
chmod 755 "$TMP"
STARTED=()
cleanup() {
    for pid in "${STARTED[@]:-}"; do
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    [ -n "${KEEP:-}" ] && echo "kept $TMP" >&2 && return
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 600); do
        $PY -c "import socket; socket.create_connection(('127.0.0.1',$1),timeout=0.2).close()" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listening on port $1" >&2
    return 1
}
# Wait (at most 120 s) until PID has exited.
wait_gone() {
    for _ in $(seq 1 1200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    echo "process $1 did not exit" >&2
    return 1
}
sink_count() {
    grep -o 'mesg=[0-9]*' "$TMP/sink.out" 2>/dev/null | tail -n 1 | cut -d= -f2
}

cat >"$TMP/zone.json" <<'EOF'
{"sink.test": {"MX": [[10, "mx.sink.test"]]}, "mx.sink.test": {"A": ["127.0.0.1"]}}
EOF
$PY "$DNS" "$TMP/zone.json" >"$TMP/dns.port" 2>"$TMP/dns.log" &
STARTED+=($!)
for _ in $(seq 1 100); do [ -s "$TMP/dns.port" ] && break; sleep 0.05; done
DNS_PORT=$(head -n 1 "$TMP/dns.port")
# Keys only for the signing modes, so that builds from before `dkim keygen`
# can still be compared on relay and hold.
case " $MODES " in *" hold-rsa "*)
    "$SMTPKIT" dkim keygen --domain bench.test --selector rsa --bits 2048 --out "$TMP/rsa.pem" >/dev/null ;;
esac
case " $MODES " in *" hold-ed25519 "*)
    "$SMTPKIT" dkim keygen --domain bench.test --selector ed --type ed25519 --out "$TMP/ed.pem" >/dev/null ;;
esac

for mode in $MODES; do
    rm -rf "$TMP/sk"
    PORT=$(free_port)
    args=(--data-dir "$TMP/sk" --listen "127.0.0.1:$PORT" --hostname relay.test
          --max-connections 20000 --max-connections-per-ip 20000)
    SINK_PID=0
    if [ "$mode" = relay ]; then
        SINK_PORT=$(free_port)
        : >"$TMP/sink.out"
        "$SINK" -c -u nobody -4 "127.0.0.1:$SINK_PORT" 1024 >"$TMP/sink.out" 2>&1 &
        SINK_PID=$!
        STARTED+=("$SINK_PID")
        wait_port "$SINK_PORT"
        args+=(--dns-server "127.0.0.1:$DNS_PORT" --mx-port "$SINK_PORT")
    else
        args+=(--hold)
    fi
    case $mode in
    hold-rsa) args+=(--dkim "bench.test:rsa:$TMP/rsa.pem") ;;
    hold-ed25519) args+=(--dkim "bench.test:ed:$TMP/ed.pem") ;;
    esac
    if [ "${CALLGRIND:-1}" = 0 ] && [ "${PERF_STAT:-0}" = 1 ]; then
        perf stat -x, -e task-clock,context-switches -o "$TMP/perf.$mode" \
            "$SMTPKIT" serve "${args[@]}" 2>"$TMP/sk.$mode.log" &
    elif [ "${CALLGRIND:-1}" = 0 ]; then
        "$SMTPKIT" serve "${args[@]}" 2>"$TMP/sk.$mode.log" &
    else
        valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.$mode" \
            "$SMTPKIT" serve "${args[@]}" 2>"$TMP/sk.$mode.log" &
    fi
    SK_PID=$!
    STARTED+=("$SK_PID")
    wait_port "$PORT"
    t0=$(date +%s.%N)
    "$SOURCE" -d -s "$SESSIONS" -m "$MSGS" -l "$LEN" -f sender@bench.test \
        -t rcpt@sink.test -M client.test "127.0.0.1:$PORT"
    if [ "$mode" = relay ]; then
        for _ in $(seq 1 6000); do
            [ "$(sink_count)" = "$MSGS" ] && break
            sleep 0.1
        done
        [ "$(sink_count)" = "$MSGS" ] || { echo "sink counted $(sink_count) of $MSGS" >&2; exit 1; }
    fi
    t1=$(date +%s.%N)
    if [ "${CALLGRIND:-1}" = 0 ] && [ "${PERF_STAT:-0}" = 1 ]; then
        # perf stat passes no signal on: the daemon is its child.
        kill -TERM "$(ps -o pid= --ppid "$SK_PID" | head -n 1)"
    else
        kill -TERM "$SK_PID"
    fi
    wait_gone "$SK_PID"
    [ "$SINK_PID" -ne 0 ] && kill -TERM "$SINK_PID" && wait_gone "$SINK_PID"
    case $mode in
    hold-*)
        # every message signed: the spool's envelopes say
        signed=$( (grep -l '^prepend =DKIM-Signature' "$TMP"/sk/spool/msg/*.msg 2>/dev/null || true) | wc -l)
        [ "$signed" -ge "$MSGS" ] || { echo "$mode: $signed of $MSGS messages signed" >&2; exit 1; }
        ;;
    esac
    if [ "${CALLGRIND:-1}" = 0 ]; then
        $PY -c "print('mode=%s messages=%d rate=%.0f/s' % ('$mode', $MSGS, $MSGS / ($t1 - $t0)))"
        if [ "${PERF_STAT:-0}" = 1 ]; then
            $PY - "$TMP/perf.$mode" "$MSGS" "$mode" <<'EOF'
import sys
vals = {}
for line in open(sys.argv[1]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0] and not line.startswith("#"):
        vals[f[2]] = float(f[0])
n = int(sys.argv[2])
print("mode=%s cpu_us_per_message=%.0f context_switches_per_message=%.1f"
      % (sys.argv[3], vals.get("task-clock", 0) * 1000 / n, vals.get("context-switches", 0) / n))
EOF
        fi
        continue
    fi
    [ -n "${CG_KEEP:-}" ] && cp "$TMP/cg.$mode" "$CG_KEEP/cg.$mode"
    ir=$(callgrind_annotate "$TMP/cg.$mode" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}')
    $PY -c "
n, ir, t = $MSGS, $ir, $t1 - $t0
print('mode=%s messages=%d instructions=%d per_message=%d wall_s=%.1f (under callgrind)' % ('$mode', n, ir, ir // n, t))"
done
