#!/bin/bash
# DKIM signing cost in durable acceptance: Postfix's smtp-source against
# `smtpkit serve --hold` with signing off, with an RSA-2048 key and with an
# Ed25519 key (keys made by `smtpkit dkim keygen`; smtp-source's messages
# are From the key's domain, so every one is signed). The three are run in
# turn, ROUNDS times, the order rotated each round, so that each round
# compares runs taken seconds apart on a machine whose speed drifts; the
# report gives each variant's median rate, the spread, and the medians of
# the per-round ratios to the unsigned run. Also the CPU time per message
# (user + system) of the server (from /proc; its event loop thread apart)
# and of smtp-source, and how many CPUs the two kept busy: the figures
# for the arithmetic of what two cores can sign (docs/BENCHMARKS.md).
# Everything on loopback; every process started here is stopped by PID.
# Usage: bench/sign_bench.sh [BUILD_DIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
MSGS=${MSGS:-4000}        # messages per run
LEN=${LEN:-1024}          # octets per message
SESSIONS=${SESSIONS:-20}
ROUNDS=${ROUNDS:-7}
BENCH_NAME=sign-bench
# shellcheck source-path=SCRIPTDIR source=postfix_lib.sh
. "$HERE/postfix_lib.sh"

"$SMTPKIT" dkim keygen --domain example.org --selector rsa --bits 2048 \
    --out "$TMP/rsa.pem" >/dev/null
"$SMTPKIT" dkim keygen --domain example.org --selector ed --type ed25519 \
    --out "$TMP/ed.pem" >/dev/null
declare -A OPTS=(
    [off]=""
    [rsa]="--dkim example.org:rsa:$TMP/rsa.pem"
    [ed25519]="--dkim example.org:ed:$TMP/ed.pem"
)
VARIANTS=(off rsa ed25519)

# user + system CPU seconds so far of a process (or, with a second
# argument, of that thread of it)
cpu_s() {
    awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1${2:+/task/$2}/stat"
}

# smtp-source's run: "elapsed-seconds cpu-seconds" (bash's time keyword:
# real, then user + system of the child)
run_source() {
    local TIMEFORMAT='%R %U %S' t
    t=$( { time "$SOURCE" -d -s "$SESSIONS" -m "$MSGS" -l "$LEN" -f sender@example.org \
        -t rcpt@localhost "127.0.0.1:$PORT" >/dev/null 2>"$TMP/source.err"; } 2>&1)
    echo "$t" | awk '{print $1, $2 + $3}'
}

LOAD_BEFORE=$(uptime)
RESULTS=$TMP/results
: >"$RESULTS"
for R in $(seq 1 "$ROUNDS"); do
    n=${#VARIANTS[@]}
    for i in $(seq 0 $((n - 1))); do
        v=${VARIANTS[$(((i + R) % n))]}
        # shellcheck disable=SC2086  # the options are words
        start_smtpkit --hold ${OPTS[$v]}
        read -r elapsed src_cpu < <(run_source)
        cpu=$(cpu_s "$SERVER_PID")
        loop_cpu=$(cpu_s "$SERVER_PID" "$SERVER_PID")
        stop_smtpkit
        rate=$($PY -c "print('%.0f' % ($MSGS / $elapsed))")
        # Every message signed (or none): the spool's envelopes say.
        signed=$( (grep -l '^prepend =DKIM-Signature' "$TMP"/sk/spool/msg/*.msg 2>/dev/null || true) | wc -l)
        echo "$R $v $rate $cpu $signed $src_cpu $loop_cpu $elapsed" >>"$RESULTS"
        echo "round=$R $v: ${rate}/s server=${cpu}s (loop ${loop_cpu}s) source=${src_cpu}s" \
            "in ${elapsed}s signed=$signed" >&2
    done
done

echo
$PY - "$RESULTS" "$MSGS" <<'EOF'
import statistics, sys
msgs = int(sys.argv[2])
runs = {}
for line in open(sys.argv[1]):
    r, v, rate, cpu, signed, src, loop, elapsed = line.split()
    runs.setdefault(v, {})[int(r)] = dict(rate=int(rate), cpu=float(cpu), signed=int(signed),
                                          src=float(src), loop=float(loop),
                                          elapsed=float(elapsed))
med = statistics.median
off = runs["off"]
print("| signing | rounds | msg/s median | msg/s min-max | ratio to off (median of rounds) | ratios per round | server CPU ms/msg | of it the loop | smtp-source CPU ms/msg | CPUs busy | signed |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for v in ("off", "rsa", "ed25519"):
    rs = runs[v]
    rates = [x["rate"] for x in rs.values()]
    ratios = [rs[r]["rate"] / off[r]["rate"] for r in sorted(rs)]
    per = lambda k: med([x[k] for x in rs.values()]) * 1000 / msgs
    busy = med([(x["cpu"] + x["src"]) / x["elapsed"] for x in rs.values()])
    print("| %s | %d | %d | %d-%d | **%.2f** | %s | %.3f | %.3f | %.3f | %.2f | %s |" % (
        v, len(rs), med(rates), min(rates), max(rates), med(ratios),
        " ".join("%.2f" % x for x in ratios), per("cpu"), per("loop"), per("src"), busy,
        "/".join(sorted({str(x["signed"]) for x in rs.values()}))))
EOF
echo
echo "Load before: $LOAD_BEFORE"
echo "Load after:  $(uptime)"
