#!/usr/bin/python3
"""`smtpkit serve --http ADDR:PORT --http-tls`: the HTTP API over TLS with
the server's certificate options (docs/http-api.md). A client that trusts
the test CA gets /v1/health and sends a message that is delivered to the
Maildir; the certificate it sees is the one of --tls-cert; a plain HTTP
request to that port gets no HTTP answer; --http-tls without a certificate
stops the start with exit 78 naming what is missing."""

import http.client
import json
import os
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402
from http_client import make_key  # noqa: E402

tmp = sktest.TempDir("sk-http-tls-")


def https(port, ctx, method, path, body=None, key=None):
    c = http.client.HTTPSConnection(HOST, port, context=ctx, timeout=30)
    h = {"Authorization": "Bearer " + key} if key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    doc = json.loads(r.read() or b"null")
    der = c.sock.getpeercert(binary_form=True)
    c.close()
    return r.status, doc, der


def main():
    ca = sktest.TestCA(tmp.join("ca"))
    cert, key = ca.issue("localhost", sans=["localhost", HOST])
    data = tmp.join("data")
    sender = make_key(data, "sender", "send")["key"]
    hport = sktest.free_port(HOST)
    srv = Serve(tmp, data_dir=data, args=["--local-domain", "localhost", "--tls-cert", cert,
                                          "--tls-key", key, "--http", "%s:%d" % (HOST, hport),
                                          "--http-tls"])
    with srv:
        ctx = ssl.create_default_context(cafile=ca.cert)
        st, doc, der = https(hport, ctx, "GET", "/v1/health")
        expect(st == 200 and doc["status"] == "ok", "health over TLS: %d %r" % (st, doc), srv)
        with open(cert) as f:
            pem = f.read()
        expect(ssl.DER_cert_to_PEM_cert(der).strip() == pem.strip(),
               "the certificate of --tls-cert", srv)
        st, doc, _ = https(hport, ctx, "POST", "/v1/messages",
                           {"from": "me@localhost", "to": ["bob@localhost"], "subject": "tls",
                            "text": "over TLS\n"}, key=sender)
        expect(st == 202, "send over TLS: %d %r" % (st, doc), srv)
        files = srv.wait_maildir("localhost", "bob", 1)
        with open(files[0], "rb") as f:
            expect(b"over TLS" in f.read(), "the message delivered", srv)
        # Plain HTTP to the TLS port: no HTTP answer comes back.
        c = http.client.HTTPConnection(HOST, hport, timeout=10)
        try:
            c.request("GET", "/v1/health")
            r = c.getresponse()
            expect(False, "a plain request was answered %d" % r.status, srv)
        except (http.client.HTTPException, OSError):
            pass
        finally:
            c.close()
        # An untrusting client fails the handshake.
        try:
            https(hport, ssl.create_default_context(), "GET", "/v1/health")
            expect(False, "a client without the CA connected", srv)
        except ssl.SSLError:
            pass

    r = sktest.smtpkit("serve", "--data-dir", tmp.join("other"), "--listen", "%s:%d" % (HOST, sktest.free_port(HOST)),
                       "--http", "%s:%d" % (HOST, sktest.free_port(HOST)), "--http-tls")
    expect(r.returncode == 78 and "tls-cert" in r.stderr,
           "--http-tls without a certificate: %d %s" % (r.returncode, r.stderr))
    print("ok")


try:
    main()
finally:
    tmp.cleanup()
