#!/usr/bin/python3
"""A loopback DNS server for tests, built on dnslib.

Serves MX, A, AAAA, TXT, PTR, CNAME and SPF (type 99) records from a dict
(or a JSON file), over UDP and TCP on the same dynamic port. Names not in
the zone get NXDOMAIN; a name whose entry has "SERVFAIL": true gets
SERVFAIL; "DROP": true gets no answer at all (to test timeouts);
"TIMEOUT": true gets no answer for the types it has no records of (the
RFC 7208 test suite's TIMEOUT). A known name without records of the asked
type gets an empty NOERROR answer (NODATA).

A TXT (or SPF) value is one record: a string is a record of one string, a
list a record of several strings (joined by SPF, RFC 7208 3.3), [] a record
of none; strings are UTF-8 encoded, or given as bytes from Python. "CNAME":
"target" answers every other type with the alias and the target's records
(followed within the zone, loops stopped). "TTL": N sets the TTL of the
name's records (default 60). "SOA": [mname, rname, serial, refresh, retry,
expire, minimum] makes the name a zone apex: NXDOMAIN and NODATA answers
for it and the names below it carry that SOA in the authority section
(RFC 2308 3; the negative TTL is the smaller of its TTL and minimum).

Zone example:
    {"example.test": {"MX": [[10, "mx1.example.test"], [20, "mx2.example.test"]]},
     "mx1.example.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
     "null.test": {"MX": [[0, "."]]},
     "txt.test": {"TXT": ["v=spf1 -all", ["two ", "strings"]]},
     "1.0.0.127.in-addr.arpa": {"PTR": ["mx1.example.test"]},
     "alias.test": {"CNAME": "txt.test", "TTL": 300}}

In a test:   with DNSTestServer(zone) as dns: run(..., "--dns-server", dns.address)
             dns.load(other_zone) serves another zone from then on.
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

from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, SOA, TXT, A, DNSLabel, DNSRecord

# How many aliases one answer follows (a chain longer than this, or a
# loop, ends the answer there).
CNAME_HOPS_MAX = 8


def _norm(name):
    """A name as the zone compares it: its labels' octets joined by dots,
    lowercase (dnslib's text form would escape a space as \\032)."""
    label = name if isinstance(name, DNSLabel) else DNSLabel(str(name).rstrip("."))
    return ".".join(part.decode("latin-1") for part in label.label).lower()


class Zone:
    def __init__(self, records):
        self.lock = threading.Lock()
        self.queries = []  # (name, type) in arrival order
        self.load(records)

    def load(self, records):
        """Serve these records from now on (replacing the others)."""
        with self.lock:
            self.records = {_norm(k): v for k, v in records.items()}

    def _soa_for(self, name):
        """(apex, entry) of the closest name at or above name with an SOA."""
        labels = name.split(".")
        for i in range(len(labels)):
            apex = ".".join(labels[i:])
            entry = self.records.get(apex)
            if entry is not None and "SOA" in entry:
                return apex, entry
        return None, None

    def answer(self, data):
        """The wire-format reply to a query, or None to stay silent."""
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return None
        q = req.q
        name, qtype = _norm(q.qname), QTYPE.get(q.qtype, str(q.qtype))
        with self.lock:
            self.queries.append((name, qtype))
            records = self.records
        reply = req.reply()
        entry = records.get(name)
        if entry is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif entry.get("DROP"):
            return None
        elif entry.get("SERVFAIL"):
            reply.header.rcode = RCODE.SERVFAIL
        elif entry.get("TIMEOUT") and not entry.get(qtype) and not entry.get("CNAME"):
            return None
        else:
            seen = set()
            owner, hops = q.qname, 0
            while True:
                seen.add(name)
                ttl = int(entry.get("TTL", 60))
                alias = entry.get("CNAME")
                if alias and qtype != "CNAME":
                    target = alias[0] if isinstance(alias, list) else alias
                    reply.add_answer(RR(owner, QTYPE.CNAME, ttl=ttl, rdata=CNAME(target)))
                    hops += 1
                    name, owner = _norm(target), DNSLabel(target)
                    entry = records.get(name)
                    if entry is None:
                        reply.header.rcode = RCODE.NXDOMAIN  # RFC 6604 2.1
                        break
                    if name in seen or hops >= CNAME_HOPS_MAX:
                        break
                    continue
                for value in entry.get(qtype, []):
                    reply.add_answer(RR(owner, q.qtype, ttl=ttl, rdata=_rdata(qtype, value)))
                break
        if not reply.rr:
            apex, soa = self._soa_for(_norm(q.qname))
            if soa is not None:
                mname, rname, serial, refresh, retry, expire, minimum = soa["SOA"]
                reply.add_auth(RR(apex, QTYPE.SOA, ttl=int(soa.get("TTL", 60)),
                                  rdata=SOA(mname, rname, (serial, refresh, retry, expire,
                                                           minimum))))
        return reply.pack()


def _rdata(qtype, value):
    if qtype == "A":
        return A(value)
    if qtype == "AAAA":
        return AAAA(value)
    if qtype == "MX":
        pref, host = value
        return MX(DNSLabel([]) if host in (".", "") else host, int(pref))
    if qtype in ("TXT", "SPF"):
        parts = value if isinstance(value, list) else [value]
        return TXT([p if isinstance(p, bytes) else p.encode() for p in parts])
    if qtype in ("PTR", "CNAME"):
        return PTR(value) if qtype == "PTR" else CNAME(value)
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

    def load(self, records):
        """Serve another zone from now on (the queries seen are kept)."""
        self.zone.load(records)

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


def serve_until_signalled(srv):
    """Print the port of srv (started) and answer until SIGTERM or SIGINT,
    then stop it: the server as a process of its own."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    print(srv.port, flush=True)
    while not stop.wait(0.5):
        pass
    srv.stop()


def main():
    if len(sys.argv) < 2:
        print("usage: dns_server.py ZONE.json [--host IP]", file=sys.stderr)
        return 64
    with open(sys.argv[1]) as f:
        records = json.load(f)
    host = sys.argv[sys.argv.index("--host") + 1] if "--host" in sys.argv else "127.0.0.1"
    serve_until_signalled(DNSTestServer(records, host).start())
    return 0


if __name__ == "__main__":
    sys.exit(main())
