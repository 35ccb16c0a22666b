"""The HTTP API's client side for tests: API keys made with `smtpkit
apikey`, one request on a connection of its own, and a request on a thread
of its own for tests of what happens while it waits."""

import http.client
import json
import os
import threading

import sktest
from serve_peer import HOST, expect


def make_key(data_dir, name, scope):
    """A new key of scope in data_dir: {"id", "key", ...}."""
    os.makedirs(data_dir, exist_ok=True)
    r = sktest.smtpkit("apikey", "--data-dir", data_dir, "create", "--name", name, "--scope",
                       scope, "--json")
    expect(r.returncode == 0, "apikey create: %s" % r.stderr)
    return json.loads(r.stdout)


def request(port, method, path, body=None, key=None, headers=None, raw=None):
    """(the response, its body as bytes): body is sent as JSON, raw (bytes)
    as it is, both with the JSON content type."""
    c = http.client.HTTPConnection(HOST, port, timeout=30)
    h = dict(headers or {})
    if key:
        h["Authorization"] = "Bearer " + key
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        h["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read()
    c.close()
    return r, text


def call(port, method, path, body=None, key=None, headers=None, raw=None):
    """(status, the body as JSON or bytes, the response)."""
    r, text = request(port, method, path, body, key, headers, raw)
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = text
    return r.status, doc, r


def in_thread(fn, *args, **kw):
    """Run fn (a request that is to wait) on a thread of its own: returns the
    thread and a dict that gets "r" (what fn returned) or "e" (what it
    raised)."""
    out = {}

    def run():
        try:
            out["r"] = fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 (reported by the caller)
            out["e"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out
