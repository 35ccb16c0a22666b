#!/bin/bash
# DKIM signing and verification throughput of libsmtpkit per core against
# dkimpy (Debian python3-dkim) on the same messages, in one run: RSA-2048
# and Ed25519, messages of 1 KiB and 100 KiB, relaxed/relaxed, keys answered
# from memory on both sides. Prints a table with the ratios (ours / dkimpy).
# Usage: bench/dkim_bench.sh [BUILD_DIR]; DKIM_BENCH_SECONDS (CPU seconds
# per measurement, default 3). Nothing is started; no network.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
SECONDS_EACH=${DKIM_BENCH_SECONDS:-3}
SMTPKIT="$BUILD/smtpkit"
for tool in "$SMTPKIT" cc pkg-config openssl /usr/bin/python3; do
    command -v "$tool" >/dev/null || { echo "dkim_bench: $tool is missing" >&2; exit 69; }
done
/usr/bin/python3 -c 'import dkim, nacl' 2>/dev/null ||
    { echo "dkim_bench: python3-dkim and python3-nacl are missing" >&2; exit 69; }

TMP=$(mktemp -d /tmp/sk-dkim-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# The library as a program is built against this build tree.
# shellcheck disable=SC2046
cc -O2 -o "$TMP/dkim_bench" "$HERE/dkim_bench.c" \
    $(PKG_CONFIG_PATH="$BUILD" pkg-config --cflags --libs smtpkit)

# Keys: ours from keygen; dkimpy's forms of the same keys.
for t in rsa ed25519; do
    "$SMTPKIT" dkim keygen --domain example.org --selector bench --type "$t" \
        --out "$TMP/$t.pem" >"$TMP/$t.out"
done
# keygen's value is quoted strings split at 255 octets: joined again here.
for t in rsa ed25519; do
    sed -n 's/^value: //p' "$TMP/$t.out" | /usr/bin/python3 -c \
        'import re, sys; print("".join(re.findall(r"\"([^\"]*)\"", sys.stdin.read())))' \
        >"$TMP/$t.record"
done
openssl pkey -in "$TMP/rsa.pem" -traditional >"$TMP/rsa.dkimpy"
openssl pkey -in "$TMP/ed25519.pem" -outform DER | tail -c 32 | base64 >"$TMP/ed25519.dkimpy"

# Messages of 1 KiB and 100 KiB: a usual header block and a text body.
/usr/bin/python3 - "$TMP" <<'PY'
import sys
tmp = sys.argv[1]
head = ("From: Zoe <zoe@example.org>\r\nTo: bob@example.net\r\nSubject: Benchmark\r\n"
        "Date: Mon, 1 Dec 2025 10:00:00 +0000\r\nMessage-ID: <bench@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n").encode()
line = b"The quick brown fox jumps over the lazy dog,  again\tand again.\r\n"
for name, size in (("1k", 1024), ("100k", 100 * 1024)):
    body = (line * (size // len(line) + 1))[: size - len(head) - 2] + b"\r\n"
    open("%s/%s.eml" % (tmp, name), "wb").write(head + body)
PY

printf '%-8s %-6s %-7s %12s %12s %8s\n' algo size op "smtpkit/s" "dkimpy/s" ratio
for t in rsa ed25519; do
    for size in 1k 100k; do
        ours=$("$TMP/dkim_bench" "$TMP/$t.pem" "$TMP/$t.record" "$TMP/$size.eml" "$SECONDS_EACH")
        theirs=$(/usr/bin/python3 "$HERE/dkim_bench.py" "$t" "$TMP/$t.dkimpy" "$TMP/$t.record" \
            "$TMP/$size.eml" "$SECONDS_EACH")
        for op in sign verify; do
            a=$(awk -v op=$op '$1 == op {print $2}' <<<"$ours")
            b=$(awk -v op=$op '$1 == op {print $2}' <<<"$theirs")
            printf '%-8s %-6s %-7s %12s %12s %8.1f\n' "$t" "$size" "$op" "$a" "$b" \
                "$(awk -v a="$a" -v b="$b" 'BEGIN {print a / b}')"
        done
    done
done
