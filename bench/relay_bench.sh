#!/bin/bash
# Relaying benchmark, end to end: Postfix's smtp-source -> the relay ->
# Postfix's smtp-sink, for `smtpkit serve` (MX found through a loopback DNS
# server, tests/integration/dns_server.py) and for a private Postfix
# instance (relayhost = [127.0.0.1]:SINKPORT, see docs/BENCHMARKS.md), one
# after the other in one run. Both keep their queues durable (fsync before
# 250). The rate is N / (time from starting the injection until smtp-sink
# has counted all N messages). Everything on loopback, free ports; every
# process started here is stopped by PID.
# Usage: bench/relay_bench.sh [BUILD_DIR]
# Env: MSGS (default 5000), SESSIONS (default "20"), LEN (default 1024),
#      SK_ARGS (extra `smtpkit serve` options), PERF_OUT (perf record of
#      the daemon per session count, to PERF_OUT.SESSIONS).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
SMTPKIT=$BUILD/smtpkit
MSGS=${MSGS:-5000}
SESSIONS=${SESSIONS:-"20"}
LEN=${LEN:-1024}
SK_ARGS=${SK_ARGS:-}
SOURCE=/usr/sbin/smtp-source
SINK=/usr/sbin/smtp-sink
PY=/usr/bin/python3
DNS=$HERE/../tests/integration/dns_server.py

[ -x "$SMTPKIT" ] || { echo "no $SMTPKIT; build first" >&2; exit 1; }
[ -x "$SOURCE" ] && [ -x "$SINK" ] || { echo "needs postfix (smtp-source, smtp-sink)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (a private Postfix instance)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/sk-relay-bench-XXXXXX)
chmod 755 "$TMP"
STARTED=()
cleanup() {
    for pid in "${STARTED[@]:-}"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${STARTED[@]:-}"; do
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 200); do
        $PY -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),timeout=0.2).close()" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on port $1" >&2
    return 1
}
stop_pid() { # PID: SIGTERM, wait until it is gone (at most 20 s)
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

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

# --- the sink: counts messages ("mesg=N" on stdout with -c) ----------------
SINK_PORT=0
SINK_PID=0
start_sink() {
    SINK_PORT=$(free_port)
    "$SINK" -c -u nobody -4 "127.0.0.1:$SINK_PORT" 1024 >"$TMP/sink.out" 2>&1 &
    SINK_PID=$!
    STARTED+=("$SINK_PID")
    wait_port "$SINK_PORT"
}
stop_sink() { stop_pid "$SINK_PID"; }

# --- smtpkit serve ---------------------------------------------------------
PORT=0
SERVER_PID=0
start_smtpkit() {
    rm -rf "$TMP/sk"
    PORT=$(free_port)
    # shellcheck disable=SC2086
    "$SMTPKIT" serve --data-dir "$TMP/sk" --listen "127.0.0.1:$PORT" --hostname relay.test \
        --dns-server "127.0.0.1:$DNS_PORT" --mx-port "$SINK_PORT" \
        --max-connections 20000 --max-connections-per-ip 20000 $SK_ARGS 2>"$TMP/sk.log" &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    wait_port "$PORT"
}
stop_smtpkit() { stop_pid "$SERVER_PID"; }

# --- a private Postfix: receive, queue (fsync), relay to the sink --------------
PFX=$TMP/postfix
setup_postfix() {
    mkdir -p "$PFX/conf" "$PFX/data"
    chown postfix "$PFX/data"
    cat >"$PFX/conf/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $PFX/conf
queue_directory = $PFX/queue
data_directory = $PFX/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.test
mydestination =
local_recipient_maps =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:SINKPORT
smtp_tls_security_level = none
maillog_file = /dev/stdout
smtputf8_enable = no
biff = no
message_size_limit = 36700160
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
EOF
    cat >"$PFX/conf/master.cf.in" <<'EOF'
127.0.0.1:PORT inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
EOF
}
start_postfix() {
    rm -rf "$PFX/queue"
    mkdir -p "$PFX/queue"
    PORT=$(free_port)
    sed -i "s/^relayhost = .*/relayhost = [127.0.0.1]:$SINK_PORT/" "$PFX/conf/main.cf"
    sed "s/PORT/$PORT/" "$PFX/conf/master.cf.in" >"$PFX/conf/master.cf"
    postfix -c "$PFX/conf" start-fg >>"$PFX/fg.log" 2>&1 &
    STARTED+=($!)
    wait_port "$PORT" || { tail -n 5 "$PFX/fg.log" >&2; return 1; }
    SERVER_PID=$(tr -d ' ' <"$PFX/queue/pid/master.pid")
    STARTED+=("$SERVER_PID")
}
stop_postfix() {
    stop_pid "$SERVER_PID"
    for _ in $(seq 1 100); do pgrep -P "$SERVER_PID" >/dev/null || break; sleep 0.1; done
}

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

setup_postfix
RESULTS=$TMP/results
: >"$RESULTS"
for S in $SESSIONS; do
    start_sink
    start_smtpkit
    PERF_PID=0
    if [ -n "${PERF_OUT:-}" ]; then
        # Profile the daemon during this run (perf report -i PERF_OUT.S).
        perf record -q -g -p "$SERVER_PID" -o "$PERF_OUT.$S" 2>/dev/null &
        PERF_PID=$!
    fi
    read -r sk_rate sk_inj < <(relay_run "$S")
    if [ "$PERF_PID" -ne 0 ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
    stop_smtpkit
    stop_sink

    start_sink
    start_postfix
    read -r pf_rate pf_inj < <(relay_run "$S")
    stop_postfix
    stop_sink

    echo "$S $sk_rate $sk_inj $pf_rate $pf_inj" >>"$RESULTS"
    echo "sessions=$S: smtpkit ${sk_rate}/s (injection ${sk_inj}/s)" \
         "postfix ${pf_rate}/s (injection ${pf_inj}/s)" >&2
done

echo
echo "| message | sessions | messages | smtpkit msg/s | Postfix msg/s | smtpkit/Postfix | smtpkit injection msg/s | Postfix injection msg/s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
while read -r s sk ski pf pfi; do
    $PY -c "
print('| %d B | %d | %d | %d | %d | %.2f | %d | %d |' % ($LEN, $s, $MSGS, $sk, $pf, $sk / $pf, $ski, $pfi))"
done <"$RESULTS"
