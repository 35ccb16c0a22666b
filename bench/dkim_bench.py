#!/usr/bin/python3
"""dkimpy's DKIM throughput per core, for bench/dkim_bench.sh: signatures
made and verified per CPU second for one message, the key answered from
memory (a dnsfunc, no DNS), relaxed/relaxed and the same header list as
libsmtpkit signs (From over-signed).
Usage: dkim_bench.py rsa|ed25519 DKIMPY_KEY RECORD MESSAGE SECONDS"""

import sys
import time

import dkim


def main():
    algo, key_path, record_path, msg_path, seconds = sys.argv[1:6]
    seconds = float(seconds)
    key = open(key_path, "rb").read().strip()
    record = open(record_path, "rb").read().strip()
    msg = open(msg_path, "rb").read()
    sig_algo = b"ed25519-sha256" if algo == "ed25519" else b"rsa-sha256"
    headers = [b"from", b"from", b"subject", b"date", b"to", b"message-id", b"mime-version",
               b"content-type"]
    n, start = 0, time.process_time()
    while True:
        sig = dkim.sign(msg, b"bench", b"example.org", key, signature_algorithm=sig_algo,
                        canonicalize=(b"relaxed", b"relaxed"), include_headers=headers)
        n += 1
        t = time.process_time() - start
        if t >= seconds:
            break
    print("sign %.1f" % (n / t))
    signed = sig + msg
    n, start = 0, time.process_time()
    while True:
        if not dkim.verify(signed, dnsfunc=lambda name, timeout=5: record):
            sys.exit("dkimpy did not verify its own signature")
        n += 1
        t = time.process_time() - start
        if t >= seconds:
            break
    print("verify %.1f" % (n / t))


main()
