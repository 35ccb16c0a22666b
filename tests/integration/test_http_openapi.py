#!/usr/bin/python3
"""docs/openapi.yaml and the router's table (src/http/api.c) name the same
routes with the same scopes: every row of sk_http_routes is documented,
and every documented operation is a row, except those marked
x-smtpkit-wired-later (GET /metrics, GET and POST /v1/webhooks, which the
metrics and webhooks modules answer)."""

import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

src = os.environ.get("SK_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
with open(os.path.join(src, "src", "http", "api.c")) as f:
    code = f.read()
table = code[code.index("const sk_http_route sk_http_routes[]"):]
rows = re.findall(r'\{"(GET|POST|PUT|DELETE)", "([^"]+)", (-1|SK_APIKEY_\w+),', table)
scopes = {"-1": None, "SK_APIKEY_SEND": "send", "SK_APIKEY_READ": "read",
          "SK_APIKEY_ADMIN": "admin"}
router = {(m, p): scopes[s] for m, p, s in rows}
sktest.expect(len(router) >= 10, "routes read from api.c: %r" % router)

with open(os.path.join(src, "docs", "openapi.yaml")) as f:
    doc = yaml.safe_load(f)
sktest.expect(doc.get("openapi", "").startswith("3.1"), "OpenAPI 3.1")
documented, later = {}, set()
for path, item in doc["paths"].items():
    for method, op in item.items():
        if method not in ("get", "post", "put", "delete"):
            continue
        key = (method.upper(), path)
        open_route = op.get("security") == []
        documented[key] = None if open_route else op.get("x-smtpkit-scope")
        if op.get("x-smtpkit-wired-later"):
            later.add(key)

failures = []
for key, scope in router.items():
    sktest.expect(key in documented, "route %s %s is not in docs/openapi.yaml" % key,
                  failures=failures)
    if key in documented:
        sktest.expect(documented[key] == scope, "%s %s: scope %r in the router, %r documented" %
                      (key + (scope, documented[key])), failures=failures)
for key in documented:
    if key not in later:
        sktest.expect(key in router, "documented %s %s is not a route" % key, failures=failures)
sktest.expect(later == {("GET", "/metrics"), ("GET", "/v1/webhooks"), ("POST", "/v1/webhooks")},
              "the routes left for the metrics and webhooks: %r" % later, failures=failures)
if failures:
    sktest.fail("%d failure(s):\n%s" % (len(failures), "\n".join(failures)))
print("ok: %d routes" % len(router))
