#!/usr/bin/python3
"""docs/openapi.yaml and the server agree. The router's table
(src/http/api.c) and the document name the same routes with the same
scopes; then every route is called on a running `smtpkit serve --http`
(answers and errors), and each JSON answer is checked against the schema
the document gives for its route and status (python3-jsonschema, JSON
Schema 2020-12 as OpenAPI 3.1 uses): a status the document does not list
for the route fails too."""

import json
import os
import re
import sys

import jsonschema
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402
from http_client import make_key, request  # noqa: E402

src = os.environ.get("SK_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
with open(os.path.join(src, "src", "http", "api.c")) as f:
    code = f.read()
table = code[code.index("const sk_http_route sk_http_routes[]"):]
rows = re.findall(r'\{"(GET|POST|PUT|DELETE)", "([^"]+)", (-1|SK_APIKEY_\w+),', table)
scopes = {"-1": None, "SK_APIKEY_SEND": "send", "SK_APIKEY_READ": "read",
          "SK_APIKEY_ADMIN": "admin"}
router = {(m, p): scopes[s] for m, p, s in rows}
sktest.expect(len(router) >= 18, "routes read from api.c: %r" % router)

with open(os.path.join(src, "docs", "openapi.yaml")) as f:
    doc = yaml.safe_load(f)
sktest.expect(doc.get("openapi", "").startswith("3.1"), "OpenAPI 3.1")
documented = {}
for path, item in doc["paths"].items():
    for method, op in item.items():
        if method not in ("get", "post", "put", "delete"):
            continue
        open_route = op.get("security") == []
        documented[(method.upper(), path)] = None if open_route else op.get("x-smtpkit-scope")

failures = []
for key, scope in router.items():
    sktest.expect(key in documented, "route %s %s is not in docs/openapi.yaml" % key,
                  failures=failures)
    if key in documented:
        sktest.expect(documented[key] == scope, "%s %s: scope %r in the router, %r documented" %
                      (key + (scope, documented[key])), failures=failures)
for key in documented:
    sktest.expect(key in router, "documented %s %s is not a route" % key, failures=failures)
if failures:
    sktest.fail("%d failure(s):\n%s" % (len(failures), "\n".join(failures)))

# ---- the answers against the schemas ----
resolver = jsonschema.RefResolver(base_uri="", referrer=doc)
checked = set()


def pattern_of(path):
    """The documented path a concrete path matches."""
    for p in doc["paths"]:
        rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) + "$"
        if re.match(rx, path.split("?")[0]):
            return p
    return None


def call(port, method, path, body=None, key=None, raw=None, srv=None):
    r, text = request(port, method, path, body=body, key=key, raw=raw)
    p = pattern_of(path)
    expect(p is not None, "%s %s: no documented path" % (method, path), srv)
    op = doc["paths"][p][method.lower()]
    resp = op["responses"].get(str(r.status))
    expect(resp is not None, "%s %s: status %d is not documented (%r)" %
           (method, path, r.status, text[:300]), srv)
    if "$ref" in resp:
        resp = resolver.resolve(resp["$ref"])[1]
    content = resp.get("content", {})
    if "application/json" in content:
        expect(r.getheader("Content-Type") == "application/json",
               "%s %s: content type %r" % (method, path, r.getheader("Content-Type")), srv)
        value = json.loads(text)
        try:
            jsonschema.Draft202012Validator(content["application/json"]["schema"],
                                            resolver=resolver).validate(value)
        except jsonschema.ValidationError as e:
            expect(False, "%s %s %d: %s\n%r" % (method, path, r.status, e.message, value), srv)
    else:
        expect(r.status == 204 or "text/plain" in content,
               "%s %s %d: no schema for its body" % (method, path, r.status), srv)
    checked.add((method, p, r.status))
    return r.status, (json.loads(text) if text and "application/json" in content else text)


tmp = sktest.TempDir("sk-openapi-")
try:
    data = tmp.join("data")
    admin = make_key(data, "admin", "admin")["key"]
    reader = make_key(data, "reader", "read")["key"]
    port = sktest.free_port(HOST)
    srv = Serve(tmp, data_dir=data, args=[
        "--local-domain", "localhost", "--relay-host", "%s:%d" % (HOST, sktest.free_port(HOST)),
        "--retry-schedule", "1h", "--http", "%s:%d" % (HOST, port),
        "--http-max-request-size", "16K"])
    with srv:
        c = lambda *a, **k: call(port, *a, srv=srv, **k)  # noqa: E731
        c("GET", "/v1/health")
        st, d = c("POST", "/v1/messages", {"from": "a@example.org", "to": ["b@localhost"],
                                           "text": "x\n", "tags": ["t"],
                                           "metadata": {"k": "v"}}, key=admin)
        local_id = d["messages"][0]["id"]
        st, d = c("POST", "/v1/messages/raw", {
            "message": "From: a@example.org\r\nTo: r@remote.example\r\nSubject: s\r\n\r\nx\r\n"},
            key=admin)
        remote_id = d["messages"][0]["id"]
        srv.wait_maildir("localhost", "b", 1)
        c("POST", "/v1/messages", {"from": "a@example.org", "to": ["bad"]}, key=admin)
        c("POST", "/v1/messages/raw", raw=b"{", key=admin)
        c("POST", "/v1/messages/raw", {"message": "x" * 20000}, key=admin)
        c("POST", "/v1/messages", {"from": "a@example.org"}, key=reader)
        c("POST", "/v1/messages", {"from": "a@example.org"})
        c("GET", "/v1/messages/" + local_id, key=reader)
        c("GET", "/v1/messages/00000000000000ZZ", key=reader)
        c("GET", "/v1/events?limit=2", key=reader)
        c("GET", "/v1/events?type=nope", key=reader)
        c("GET", "/v1/stats?tag=t", key=reader)
        c("GET", "/v1/suppressions", key=reader)
        c("PUT", "/v1/suppressions/s@example.org", {"reason": "asked"}, key=admin)
        c("PUT", "/v1/suppressions/s@example.org", {"until": "x"}, key=admin)
        c("GET", "/v1/suppressions/s@example.org", key=reader)
        c("DELETE", "/v1/suppressions/s@example.org", key=admin)
        c("GET", "/v1/suppressions/s@example.org", key=reader)
        c("DELETE", "/v1/suppressions/s@example.org", key=admin)
        sktest.wait_for(lambda: any(q["state"] == "deferred" for q in srv.queue_list()),
                        timeout=30, what="a deferred message")
        c("GET", "/v1/queue", key=reader)
        c("POST", "/v1/queue/%s/hold" % remote_id, key=admin)
        c("GET", "/v1/queue", key=reader)
        c("POST", "/v1/queue/%s/retry" % remote_id, key=admin)
        c("POST", "/v1/queue/%s/release" % remote_id, key=admin)
        c("POST", "/v1/queue/00000000000000ZZ/release", key=admin)
        c("DELETE", "/v1/queue/" + remote_id, key=admin)
        c("POST", "/v1/queue/%s/hold" % remote_id, key=admin)
        url = "http://%s:%d/h" % (HOST, sktest.free_port(HOST))
        st, d = c("POST", "/v1/webhooks", {"url": url,
                                           "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
                  key=admin)
        c("POST", "/v1/webhooks", {"url": "ftp://x"}, key=admin)
        c("GET", "/v1/webhooks", key=reader)
        c("DELETE", "/v1/webhooks/" + d["id"], key=admin)
        c("DELETE", "/v1/webhooks/" + d["id"], key=admin)
        c("GET", "/metrics", key=reader)
    # Every route was answered at least once.
    answered = {(m, p) for m, p, _ in checked}
    missing = {(m, p) for m, p in router} - answered
    expect(not missing, "routes not exercised: %r" % sorted(missing))
    for want in [("POST", "/v1/messages", 400), ("POST", "/v1/messages/raw", 413),
                 ("POST", "/v1/messages", 403), ("POST", "/v1/messages", 401)]:
        expect(want in checked, "not seen: %r" % (want,))
    print("ok: %d routes, %d answers checked" % (len(router), len(checked)))
finally:
    tmp.cleanup()
