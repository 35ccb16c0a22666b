"""The HTTP API's client side for tests: API keys made with `smtpkit
apikey`, and one request on a connection of its own."""

import http.client
import json
import os

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
