"""A webhook receiver for the tests: an HTTP/1.1 server on loopback that
checks every request's Standard Webhooks signature with its own HMAC code
(not the server's), and keeps what arrived."""

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time


def verify(secret, headers, body):
    """True when webhook-signature holds a v1 signature of
    id.timestamp.body under secret ("whsec_" + base64)."""
    key = base64.b64decode(secret[len("whsec_"):])
    msg_id = headers.get("webhook-id", "")
    ts = headers.get("webhook-timestamp", "")
    signed = ("%s.%s." % (msg_id, ts)).encode() + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    sigs = headers.get("webhook-signature", "").split(" ")
    return any(s.startswith("v1,") and hmac.compare_digest(s[3:], want) for s in sigs)


class Receiver:
    """Start with start(); requests get 200 after delay seconds. .got is a
    list of (webhook-id, parsed body) in arrival order; .bad counts
    requests whose signature or timestamp did not verify."""

    def __init__(self, port, secret, delay=0.0, host="127.0.0.1"):
        self.port, self.secret, self.delay, self.host = port, secret, delay, host
        self.got, self.bad, self.lock = [], [], threading.Lock()
        self.httpd = None

    def start(self):
        rcv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                ok = verify(rcv.secret, self.headers, body)
                ts = int(self.headers.get("webhook-timestamp", "0"))
                ok = ok and abs(time.time() - ts) < 300
                if rcv.delay:
                    time.sleep(rcv.delay)
                with rcv.lock:
                    if ok:
                        rcv.got.append((self.headers["webhook-id"], json.loads(body)))
                    else:
                        rcv.bad.append(dict(self.headers))
                self.send_response(200 if ok else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def unique(self):
        """The first arrival of each webhook-id, in arrival order."""
        seen, out = set(), []
        with self.lock:
            for i, b in self.got:
                if i not in seen:
                    seen.add(i)
                    out.append((i, b))
        return out
