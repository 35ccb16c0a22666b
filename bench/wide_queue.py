#!/usr/bin/python3
"""Helpers of bench/wide_queue.sh (the wide-queue benchmark).

  wide_queue.py plan DIR          the zone (DIR/zone.json) and the recipient
                                  lists (DIR/rcpt.A, DIR/rcpt.B) from the
                                  sizes in the environment (see the script)
  wide_queue.py dns ZONE.json    tests/integration/dns_server.py's server
                                  with a receive buffer that holds a burst
                                  of queries (see DNS_RCVBUF); prints its
                                  port, serves until SIGTERM
  wide_queue.py slow PORT DELAY IP...
                                  an SMTP host on IP:PORT for each IP that
                                  sleeps DELAY seconds before each reply and
                                  takes every message; prints "ready"
  wide_queue.py report T0 N DIR...
                                  reads the sinks' per-message dumps
                                  (smtp-sink -d) in DIR...: the healthy
                                  messages' delivery rate since T0 (epoch
                                  seconds, the daemon's start) and the
                                  spread of per-domain completion; prints
                                  one line of "key=value"
"""

import asyncio
import json
import os
import socket
import sys

# The daemon asks for thousands of MX records at once when a wide queue
# starts; the test server's default UDP receive buffer (212 KiB) drops
# about half of such a burst, and each dropped query costs the resolver
# its 5 s timeout (SK_DNS_TIMEOUT_MS_DEFAULT), which would measure the
# test server rather than the queue. The kernel caps this at rmem_max.
DNS_RCVBUF = 8 << 20

HEALTHY_SINKS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
# One MX host (so one destination, domains being grouped by MX host set)
# per address: the slow, the failing and the throttled destinations.
SLOW_IPS = ["127.0.0.%d" % i for i in range(10, 18)]
FAIL_IPS = ["127.0.0.%d" % i for i in range(20, 24)]
THROTTLE_IPS = ["127.0.0.%d" % i for i in range(30, 32)]


def env(name, default):
    return int(os.environ.get(name, default))


def plan(out):
    domains = env("DOMAINS", 10000)
    per = env("PER_DOMAIN", 2)
    bad_domains = env("BAD_DOMAINS", 40)  # of each kind
    bad_per = env("BAD_PER_DOMAIN", 25)
    zone = {}
    for i, ip in enumerate(HEALTHY_SINKS):
        zone["mx%d.healthy.test" % i] = {"A": [ip]}
    for kind, ips in (("slow", SLOW_IPS), ("fail", FAIL_IPS), ("thr", THROTTLE_IPS)):
        for i, ip in enumerate(ips):
            zone["mx%d.%s.test" % (i, kind)] = {"A": [ip]}
    healthy = []
    for d in range(domains):
        name = "h%d.wide.test" % d
        zone[name] = {"MX": [[10, "mx%d.healthy.test" % (d % len(HEALTHY_SINKS))]]}
        healthy.append(name)
    bad = []
    kinds = os.environ.get("KINDS", "slow fail thr").split()
    for kind, ips in (("slow", SLOW_IPS), ("fail", FAIL_IPS), ("thr", THROTTLE_IPS)):
        if kind not in kinds:
            continue
        for d in range(bad_domains):
            name = "%s%d.wide.test" % (kind, d)
            zone[name] = {"MX": [[10, "mx%d.%s.test" % (d % len(ips), kind)]]}
            bad.append(name)
    with open(os.path.join(out, "zone.json"), "w") as f:
        json.dump(zone, f)
    # Healthy mail in domain order round by round (each domain's messages
    # spread over the queue), the other kinds interleaved with it in B and
    # queued first (their messages are older), as a backlog would be.
    rcpt_a = ["u%d@%s" % (k, d) for k in range(per) for d in healthy]
    rcpt_bad = ["u%d@%s" % (k, d) for k in range(bad_per) for d in bad]
    with open(os.path.join(out, "rcpt.A"), "w") as f:
        f.write("\n".join(rcpt_a) + "\n")
    with open(os.path.join(out, "rcpt.B"), "w") as f:
        f.write("\n".join(rcpt_bad + rcpt_a) + "\n")
    # --rate-limit: one domain of each throttled destination names it.
    limits = ["thr%d.wide.test=%s" % (i, os.environ.get("THROTTLE", "5/s"))
              for i in range(len(THROTTLE_IPS))]
    with open(os.path.join(out, "rate_limits"), "w") as f:
        f.write(" ".join(limits) + "\n")
    print("healthy=%d bad=%d" % (len(rcpt_a), len(rcpt_bad)))


async def slow_session(reader, writer, delay, counter):
    async def reply(text):
        await asyncio.sleep(delay)
        writer.write(text.encode() + b"\r\n")
        await writer.drain()

    try:
        await reply("220 slow.test ESMTP")
        while True:
            line = await reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                await reply("250 slow.test")
            elif verb == b"DATA":
                await reply("354 go ahead")
                while True:
                    body = await reader.readline()
                    if not body or body == b".\r\n":
                        break
                if not body:
                    return
                counter[0] += 1
                await reply("250 2.0.0 Ok")
            elif verb == b"QUIT":
                await reply("221 bye")
                return
            else:
                await reply("250 Ok")
    except (OSError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def slow(port, delay, ips):
    counter = [0]
    servers = []
    for ip in ips:
        servers.append(await asyncio.start_server(
            lambda r, w: slow_session(r, w, delay, counter), ip, port, reuse_address=True))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def dns(zone_file):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))
    from dns_server import DNSTestServer, serve_until_signalled

    with open(zone_file) as f:
        records = json.load(f)
    srv = DNSTestServer(records)
    srv.udp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DNS_RCVBUF)
    serve_until_signalled(srv.start())


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def report(t0, n, dirs):
    last = {}
    first_any = None
    count = 0
    for d in dirs:
        for name in os.listdir(d):
            path = os.path.join(d, name)
            mtime = os.stat(path).st_mtime
            rcpt = None
            with open(path, "rb") as f:
                for line in f:
                    if line.startswith(b"X-Rcpt-Args: <"):
                        rcpt = line[14:].split(b">")[0].decode()
                        break
            if rcpt is None or not rcpt.endswith(".wide.test") or "@h" not in rcpt:
                continue
            count += 1
            dom = rcpt.split("@")[1]
            last[dom] = max(last.get(dom, 0), mtime)
            first_any = mtime if first_any is None else min(first_any, mtime)
    if count < n:
        sys.exit("wide_queue: %d of %d healthy messages in the dumps" % (count, n))
    done = [t - t0 for t in last.values()]
    end = max(done)
    print("healthy=%d domains=%d seconds=%.2f rate=%.0f first=%.2f rate_from_first=%.0f "
          "p50=%.2f p95=%.2f max=%.2f" % (
              count, len(last), end, count / end, first_any - t0,
              count / (end - (first_any - t0)), percentile(done, 50), percentile(done, 95), end))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "plan":
        plan(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "dns":
        dns(sys.argv[2])
    elif len(sys.argv) >= 5 and sys.argv[1] == "slow":
        asyncio.run(slow(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]))
    elif len(sys.argv) >= 5 and sys.argv[1] == "report":
        report(float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
