# Shared set-up of serve_bench.sh and relay_bench.sh, sourced by both: the
# prerequisites, a scratch directory, the processes started (stopped by PID
# at exit), loopback ports, smtpkit serve, smtp-sink and a private Postfix
# instance (receiving with its durable queue; the caller adds the main.cf
# lines that say what it does with the mail).
#
# The caller sets BUILD and BENCH_NAME, then sources this file. BENCH_DIR
# (default /tmp) is where the scratch directory goes: see set_aside.

SMTPKIT=$BUILD/smtpkit
SOURCE=/usr/sbin/smtp-source
SINK=/usr/sbin/smtp-sink
PY=/usr/bin/python3

[ -x "$SMTPKIT" ] || { echo "no $SMTPKIT; build first" >&2; exit 1; }
[ -x "$SOURCE" ] && [ -x "$SINK" ] || { echo "needs postfix (smtp-source, smtp-sink)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (a private Postfix instance)" >&2; exit 1; }

# A directory on the same file system as the others but away from /tmp,
# whose files other programs create and delete all the time, measures the
# receivers rather than that churn.
TMP=$(mktemp -d "${BENCH_DIR:-/tmp}/sk-$BENCH_NAME-XXXXXX")
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
wait_port() { # PORT [HOST, default 127.0.0.1]
    local host=${2:-127.0.0.1}
    for _ in $(seq 1 200); do
        $PY -c "import socket,sys; socket.create_connection(('$host',$1),timeout=0.2).close()" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on $host:$1" >&2
    return 1
}
stop_pid() { # PID: SIGTERM, wait until it is gone (at most 20 s)
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

# Each run's spool or queue is moved aside, not deleted, and everything is
# removed at exit: ext4 (Linux 6.x) scans inodes deleted in the last few
# seconds on every file creation (recently_deleted() in find_inode_bit), so
# deleting thousands of files right before a run slows down the receiver
# that runs next, whichever it is.
RUN=0
set_aside() { [ -e "$1" ] && mv "$1" "$TMP/old.$((RUN += 1))" || true; }

# --- the receivers: each sets PORT and SERVER_PID ---------------------------
PORT=0
SERVER_PID=0

# start_smtpkit [SERVE OPTIONS...]: smtpkit serve on a free port, data in
# $TMP/sk, stderr in $TMP/sk.log.
start_smtpkit() {
    set_aside "$TMP/sk"
    PORT=$(free_port)
    "$SMTPKIT" serve --data-dir "$TMP/sk" --listen "127.0.0.1:$PORT" \
        --max-connections 20000 --max-connections-per-ip 20000 "$@" 2>"$TMP/sk.log" &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    wait_port "$PORT"
}
stop_smtpkit() { stop_pid "$SERVER_PID"; }

# start_sink PORT_VAR PID_VAR [SMTP-SINK OPTIONS...]: smtp-sink on a free
# port (no disk), its port and PID stored in the named variables; stdout
# and stderr go where the caller's redirections say.
start_sink() {
    local -n port_=$1 pid_=$2
    shift 2
    port_=$(free_port)
    "$SINK" "$@" -u nobody -4 "127.0.0.1:$port_" 1024 &
    pid_=$!
    STARTED+=("$pid_")
    wait_port "$port_"
}

PFX=$TMP/postfix
# setup_postfix < MAIN_CF_LINES: the private instance's configuration; the
# lines on standard input are added to main.cf.
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
    cat >>"$PFX/conf/main.cf"
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
# start_postfix [MAIN.CF SETTING...]: an empty queue, a free port, and
# each "name = value" given set in main.cf first (postconf -e).
start_postfix() {
    set_aside "$PFX/queue"
    mkdir -p "$PFX/queue"
    [ $# -eq 0 ] || postconf -c "$PFX/conf" -e "$@"
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
    # Its daemons exit with the master; wait until they are gone.
    for _ in $(seq 1 100); do pgrep -P "$SERVER_PID" >/dev/null || break; sleep 0.1; done
}
