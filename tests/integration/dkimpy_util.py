"""What the tests that hold our DKIM and ARC against dkimpy's (Debian
python3-dkim) share: the openssl and smtpkit commands, a message made of
header lines and a body, and dkimpy's TXT lookup (its dnsfunc) answered by
the test's own dns_server.py."""

import subprocess

import sktest
from dnslib import DNSRecord


def openssl(*args, input=None):
    """openssl's standard output (bytes); a failure raises."""
    return subprocess.run(["openssl"] + list(args), input=input, capture_output=True,
                          check=True, timeout=60).stdout


def sk(*args, input=b""):
    """The smtpkit command run on input (bytes): its CompletedProcess, output
    as bytes."""
    return subprocess.run([sktest.SMTPKIT] + list(args), input=input, capture_output=True,
                          timeout=60)


def msg(headers, body):
    """A message: the header lines (str, without their CRLF), then body (bytes)."""
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def txt_lookup(port):
    """dkimpy's dnsfunc over TCP to the DNS test server on loopback port:
    the TXT record of name (bytes) as bytes, None when it has none."""
    def dnsfunc(name, timeout=5):
        q = DNSRecord.question(name.decode().rstrip("."), "TXT")
        reply = DNSRecord.parse(q.send("127.0.0.1", port, tcp=True, timeout=timeout))
        for rr in reply.rr:
            if rr.rtype == 16:
                return b"".join(rr.rdata.data)
        return None
    return dnsfunc
