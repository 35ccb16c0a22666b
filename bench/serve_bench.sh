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
SMTPKIT=$BUILD/smtpkit
MSGS_1K=${MSGS_1K:-2000}     # messages per run, 1 KiB each
MSGS_100K=${MSGS_100K:-500}  # messages per run, 100 KiB each
SESSIONS=${SESSIONS:-"1 20 100"}
IDLE=${IDLE:-5000}           # idle connections for the memory figure
SOURCE=/usr/sbin/smtp-source
SINK=/usr/sbin/smtp-sink
PY=/usr/bin/python3

[ -x "$SMTPKIT" ] || { echo "no $SMTPKIT; build first" >&2; exit 1; }
[ -x "$SOURCE" ] && [ -x "$SINK" ] || { echo "needs postfix (smtp-source, smtp-sink)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (a private Postfix instance)" >&2; exit 1; }

# Where the spools and queues go (BENCH_DIR, default /tmp): a directory on
# the same file system as the others but away from /tmp, whose files other
# programs create and delete all the time, measures the receivers rather
# than that churn (see set_aside below).
TMP=$(mktemp -d "${BENCH_DIR:-/tmp}/sk-serve-bench-XXXXXX")
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

# --- the servers ---------------------------------------------------------
PORT=0
SERVER_PID=0
# Each run's spool or queue is moved aside, not deleted, and everything is
# removed at exit: ext4 (Linux 6.x) scans inodes deleted in the last few
# seconds on every file creation (recently_deleted() in find_inode_bit), so
# deleting thousands of files right before a run slows down the receiver
# that runs next, whichever it is.
RUN=0
set_aside() { [ -e "$1" ] && mv "$1" "$TMP/old.$((RUN += 1))" || true; }
start_smtpkit() {
    set_aside "$TMP/sk"
    PORT=$(free_port)
    "$SMTPKIT" serve --hold --data-dir "$TMP/sk" --listen "127.0.0.1:$PORT" \
        --max-connections 20000 --max-connections-per-ip 20000 2>"$TMP/sk.log" &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    wait_port "$PORT"
}
stop_smtpkit() { stop_pid "$SERVER_PID"; }

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
# Keep every message in the hold queue: received, written, fsync'd, not delivered.
smtpd_recipient_restrictions = check_recipient_access static:HOLD, permit
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
    set_aside "$PFX/queue"
    mkdir -p "$PFX/queue"
    PORT=$(free_port)
    sed "s/PORT/$PORT/" "$PFX/conf/master.cf.in" >"$PFX/conf/master.cf"
    postfix -c "$PFX/conf" start-fg >>"$PFX/fg.log" 2>&1 &
    STARTED+=($!)
    wait_port "$PORT" || { tail -n 5 "$PFX/fg.log" >&2; return 1; }
    SERVER_PID=$(tr -d ' ' <"$PFX/queue/pid/master.pid")
    STARTED+=("$SERVER_PID")
}
stop_postfix() {
    stop_pid "$SERVER_PID"
    # Its daemons exit with the master; wait for the port to be free.
    for _ in $(seq 1 100); do pgrep -P "$SERVER_PID" >/dev/null || break; sleep 0.1; done
}

start_sink() {
    PORT=$(free_port)
    "$SINK" -u nobody -4 "127.0.0.1:$PORT" 1024 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    wait_port "$PORT"
}
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
setup_postfix
RESULTS=$TMP/results
: >"$RESULTS"
for spec in "1024 $MSGS_1K" "102400 $MSGS_100K"; do
    set -- $spec
    LEN=$1 MSGS=$2
    for S in $SESSIONS; do
        start_smtpkit
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

        start_sink
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
start_smtpkit
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
