#!/usr/bin/python3
"""A loopback DNS server for tests, built on dnslib.

Serves MX, A, AAAA and TXT records from a dict (or a JSON file), over UDP
and TCP on the same dynamic port. Names not in the zone get NXDOMAIN; a
name whose entry has "SERVFAIL": true gets SERVFAIL; "DROP": true gets no
answer at all (to test timeouts). A known name without records of the
asked type gets an empty NOERROR answer (NODATA).

Zone example:
    {"example.test": {"MX": [[10, "mx1.example.test"], [20, "mx2.example.test"]]},
     "mx1.example.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
     "null.test": {"MX": [[0, "."]]},
     "txt.test": {"TXT": ["v=spf1 -all", ["two ", "strings"]]}}

In a test:   with DNSTestServer(zone) as dns: run(..., "--dns-server", dns.address)
As a program: dns_server.py ZONE.json [--host 127.0.0.1] prints the port
on its first line, then serves until SIGTERM.
"""

import json
import signal
import socket
import socketserver
import struct
import sys
import threading

from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A, DNSLabel, DNSRecord


def _norm(name):
    return str(name).rstrip(".").lower()


class Zone:
    def __init__(self, records):
        self.records = {_norm(k): v for k, v in records.items()}
        self.lock = threading.Lock()
        self.queries = []  # (name, type) in arrival order

    def answer(self, data):
        """The wire-format reply to a query, or None to stay silent."""
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return None
        q = req.q
        name, qtype = _norm(q.qname), QTYPE[q.qtype]
        with self.lock:
            self.queries.append((name, qtype))
        reply = req.reply()
        entry = self.records.get(name)
        if entry is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif entry.get("DROP"):
            return None
        elif entry.get("SERVFAIL"):
            reply.header.rcode = RCODE.SERVFAIL
        else:
            for value in entry.get(qtype, []):
                reply.add_answer(RR(q.qname, q.qtype, ttl=60, rdata=_rdata(qtype, value)))
        return reply.pack()


def _rdata(qtype, value):
    if qtype == "A":
        return A(value)
    if qtype == "AAAA":
        return AAAA(value)
    if qtype == "MX":
        pref, host = value
        return MX(DNSLabel([]) if host in (".", "") else host, int(pref))
    if qtype == "TXT":
        parts = value if isinstance(value, list) else [value]
        return TXT([p.encode() for p in parts])
    raise ValueError("unsupported record type " + qtype)


class _UDP(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        out = self.server.zone.answer(data)
        if out is None:
            return
        if len(out) > 512:
            # RFC 1035 4.2.1: over UDP at most 512 octets; set TC so the
            # client asks again over TCP (we ignore EDNS on purpose).
            reply = DNSRecord.parse(data).reply()
            reply.header.tc = 1
            out = reply.pack()
        sock.sendto(out, self.client_address)


class _TCP(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.connections += 1
        # RFC 1035 4.2.2: each message is preceded by its two-octet length.
        self.request.settimeout(5)
        while True:
            head = self._read(2)
            if head is None:
                return
            data = self._read(struct.unpack("!H", head)[0])
            if data is None:
                return
            out = self.server.zone.answer(data)
            if out is None:
                continue
            self.request.sendall(struct.pack("!H", len(out)) + out)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.request.recv(n - len(buf))
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf


class _UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = False


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class DNSTestServer:
    """UDP + TCP DNS on host:port (port 0 = pick one free for both)."""

    def __init__(self, records, host="127.0.0.1"):
        self.zone = Zone(records)
        self.host = host
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        _UDPServer.address_family = fam
        _TCPServer.address_family = fam
        for _ in range(20):
            udp = _UDPServer((host, 0), _UDP)
            port = udp.server_address[1]
            try:
                tcp = _TCPServer((host, port), _TCP)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self.udp, self.tcp, self.port = udp, tcp, port
        self.udp.zone = self.tcp.zone = self.zone
        self.tcp.connections = 0
        self.threads = []

    @property
    def address(self):
        """The IP:PORT form that --dns-server takes."""
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)

    def queries(self):
        """(name, type) of every query received, over UDP and TCP."""
        with self.zone.lock:
            return list(self.zone.queries)

    def tcp_connections(self):
        return self.tcp.connections

    def start(self):
        for srv in (self.udp, self.tcp):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1})
            t.daemon = True
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        for srv in (self.udp, self.tcp):
            srv.shutdown()
            srv.server_close()
        for t in self.threads:
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main():
    if len(sys.argv) < 2:
        print("usage: dns_server.py ZONE.json [--host IP]", file=sys.stderr)
        return 64
    with open(sys.argv[1]) as f:
        records = json.load(f)
    host = sys.argv[sys.argv.index("--host") + 1] if "--host" in sys.argv else "127.0.0.1"
    srv = DNSTestServer(records, host).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    print(srv.port, flush=True)
    while not stop.wait(0.5):
        pass
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
