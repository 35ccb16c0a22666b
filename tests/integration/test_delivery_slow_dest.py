#!/usr/bin/python3
"""Delivery to healthy destinations goes on while one destination answers
slowly and another refuses connections.

slow.test's MX takes every connection but sleeps before each reply, and
until the test lets it go it says nothing at all (so its sessions hold
whatever the server gave them for as long as the test wants);
refused.test's MX address has nothing listening (connection refused, 4xx,
retried on the schedule); healthy.test's MX is an ordinary aiosmtpd host.
Mail for the slow and the refusing destinations goes in first, then mail
for the healthy one. Judged by order and counts, never by a rate: every
healthy message must be delivered while the slow host has still not
finished a single transaction and the refused messages are deferred, not
delivered. Then the slow host is let go and gets all of its mail; the
refused messages stay queued.

Then fair shares of the 32 delivery slots (docs/queue.md "Scheduling"):
four slow destinations, each at its limit of 8 connections, would hold
all 32 with sessions that do not answer. Their mail goes in first, then
a healthy destination's: every healthy message must be delivered while
the four slow hosts have not finished one transaction, and they hold at
most 32 - 8 connections between them, plus one for each that took its
first from the reserve (the last quarter of the slots is kept for
destinations holding none). tests/unit/test_dispatch.c has the
same with eight slow destinations, and where a freed slot goes.
"""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import MX, expect, finish, serve, source, wait  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "healthy.test": {"MX": [[10, "mx.healthy.test"]]},
    "mx.healthy.test": {"A": ["127.0.0.2"]},
    "slow.test": {"MX": [[10, "mx.slow.test"]]},
    "mx.slow.test": {"A": ["127.0.0.3"]},
    "refused.test": {"MX": [[10, "mx.refused.test"]]},
    "mx.refused.test": {"A": ["127.0.0.4"]},
}
# The four slow destinations of the second part, each its own MX host.
SLOW4 = ["slow%d.test" % i for i in range(1, 5)]
SLOW4_IPS = ["127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"]
for _d, _ip in zip(SLOW4, SLOW4_IPS):
    ZONE[_d] = {"MX": [[10, "mx." + _d]]}
    ZONE["mx." + _d] = {"A": [_ip]}
SLOTS = 32          # the queue's deliveries in flight (SK_SMTP_WORKERS_DEFAULT)
RESERVE = SLOTS // 4  # kept for destinations holding no slot
N_HEALTHY4 = 40
N_SLOW = 24      # three times the connections a destination may have
N_REFUSED = 24
N_HEALTHY = 120
DELAY = 0.2      # the slow host's sleep before each reply, once let go


class SlowMX(sktest.Listener):
    """An SMTP host that sleeps DELAY before each reply and, until go is
    set, does not answer at all. Each connection has its own thread (held
    open until stop()); counts the transactions it completed."""

    def __init__(self, host, port):
        super().__init__(host, port, backlog=64, reuse_addr=True)
        self.go = threading.Event()
        self.lock = threading.Lock()
        self.messages = 0
        self.threads = []

    def handle(self, conn):
        self.hold(conn)
        t = threading.Thread(target=self.session, args=(conn,), daemon=True)
        self.threads.append(t)
        t.start()

    def reply(self, conn, text):
        while not self.go.is_set():
            if self.stopping.wait(0.1):
                raise OSError("stopping")
        time.sleep(DELAY)
        conn.sendall(text.encode() + b"\r\n")

    def session(self, conn):
        try:
            conn.settimeout(120)
            f = conn.makefile("rb")
            self.reply(conn, "220 mx.slow.test ESMTP")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    self.reply(conn, "250 mx.slow.test")
                elif verb == b"DATA":
                    self.reply(conn, "354 go ahead")
                    while True:
                        body = f.readline()
                        if not body or body == b".\r\n":
                            break
                    if not body:
                        return
                    with self.lock:
                        self.messages += 1
                    self.reply(conn, "250 2.0.0 Ok")
                elif verb == b"QUIT":
                    self.reply(conn, "221 bye")
                    return
                else:
                    self.reply(conn, "250 Ok")
        except OSError:
            return

    def stop(self):
        self.go.set()
        super().stop()
        for t in self.threads:
            t.join(5)


def nothing_listening(host, port):
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) != 0


tmp = sktest.TempDir("sk-delivery-slow-")
try:
    port = sktest.free_port("127.0.0.2")
    expect(nothing_listening("127.0.0.4", port), "port %d is free on 127.0.0.4" % port)
    with DNSTestServer(ZONE) as dns, MX("127.0.0.2", port, "mx.healthy.test") as healthy, \
            SlowMX("127.0.0.3", port) as slow:
        srv = serve(tmp, dns, port, retry="1s,2s", lifetime="10m")
        with srv:
            s = source(srv, N_SLOW, "news@local.test", "reader@slow.test", sessions=4)
            finish(s, 60, "smtp-source to slow.test", srv)
            r = source(srv, N_REFUSED, "news@local.test", "reader@refused.test", sessions=4)
            finish(r, 60, "smtp-source to refused.test", srv)
            # The slow host has sessions open (and answers none of them).
            wait(lambda: slow.connections >= 1, 30, "a connection to the slow host", srv)
            t0 = time.monotonic()
            h = source(srv, N_HEALTHY, "news@local.test", "reader@healthy.test", sessions=4)
            finish(h, 60, "smtp-source to healthy.test", srv)
            wait(lambda: len(healthy.messages) >= N_HEALTHY, 60, "healthy.test messages", srv)
            took = time.monotonic() - t0
            print("healthy.test: %d messages in %.2fs while slow.test held %d connections"
                  % (N_HEALTHY, took, slow.connections))
            expect(slow.messages == 0,
                   "the slow host finished %d transactions before it was let go"
                   % slow.messages, srv)
            refused_queue = [m for m in srv.queue_list()
                             if m["recipients"] == ["reader@refused.test"]]
            expect(len(refused_queue) == N_REFUSED,
                   "%d of %d refused.test messages queued" % (len(refused_queue), N_REFUSED),
                   srv)
            wait(lambda: sum(1 for m in srv.queue_list()
                             if m["recipients"] == ["reader@refused.test"] and m["attempts"] >= 1)
                 == N_REFUSED, 30, "every refused.test message tried and deferred", srv)
            # Let the slow host answer: all of its mail arrives.
            slow.go.set()
            wait(lambda: slow.messages >= N_SLOW, 120, "slow.test messages", srv)
            expect(len(healthy.messages) == N_HEALTHY,
                   "healthy.test got %d messages" % len(healthy.messages), srv)
            # The slow host counts a message before its 250 reaches the
            # server, which then removes it from the queue.
            wait(lambda: len(srv.queue_list()) == N_REFUSED, 30,
                 "only the refused.test messages left in the queue", srv)
            expect(all(m["recipients"] == ["reader@refused.test"] for m in srv.queue_list()),
                   "what stays queued is for refused.test", srv)

    # Four slow destinations at their connection limit, then a healthy one.
    with DNSTestServer(ZONE) as dns, MX("127.0.0.2", port, "mx.healthy.test") as healthy, \
            SlowMX(SLOW4_IPS[0], port) as s1, SlowMX(SLOW4_IPS[1], port) as s2, \
            SlowMX(SLOW4_IPS[2], port) as s3, SlowMX(SLOW4_IPS[3], port) as s4:
        slows = [s1, s2, s3, s4]
        srv = serve(tmp, dns, port, name="serve4", retry="1s,2s", lifetime="10m")
        with srv:
            for d in SLOW4:
                p = source(srv, N_SLOW, "news@local.test", "reader@" + d, sessions=4)
                finish(p, 60, "smtp-source to " + d, srv)
            wait(lambda: sum(x.connections for x in slows) >= SLOTS - RESERVE, 30,
                 "the slow hosts holding most of the slots", srv)
            h = source(srv, N_HEALTHY4, "news@local.test", "reader@healthy.test", sessions=4)
            finish(h, 60, "smtp-source to healthy.test", srv)
            wait(lambda: len(healthy.messages) >= N_HEALTHY4, 60,
                 "healthy.test messages while four slow hosts hold their connections", srv)
            held = [x.connections for x in slows]
            print("healthy.test: %d messages while the slow hosts held %r connections"
                  % (N_HEALTHY4, held))
            expect(sum(x.messages for x in slows) == 0,
                   "the slow hosts finished transactions before they were let go", srv)
            # A slow destination holding none may take one reserved slot.
            most = SLOTS - RESERVE + len(slows)
            expect(sum(held) <= most,
                   "the slow hosts hold %d connections, more than %d" % (sum(held), most),
                   srv)
            for x in slows:
                x.go.set()
            wait(lambda: all(x.messages >= N_SLOW for x in slows), 120,
                 "the slow hosts' messages once let go", srv)
    print("ok")
finally:
    tmp.cleanup()
