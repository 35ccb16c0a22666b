#!/usr/bin/python3
"""Oracle for tests/unit/test_authres.c: Python's authres library
(python3-authres) reads the Authentication-Results headers our builder
wrote (DIR/ours.json: header, id, and the results they must hold), and
writes headers of its own (DIR/theirs.txt: "ID<TAB>HEADER" a line) for the
C side to read back. Exit 0 when every header matches, 1 otherwise."""

import json
import sys

import authres


def unfold(header):
    return header.replace("\r\n", "")


def check_ours(path):
    bad = 0
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    for case in cases:
        h = authres.AuthenticationResultsHeader.parse(unfold(case["header"]).rstrip())
        got = {
            "id": h.authserv_id,
            "results": [
                {
                    "method": r.method,
                    "result": r.result,
                    "reason": r.reason,
                    "props": [[p.type, p.name, p.value] for p in r.properties],
                }
                for r in h.results
            ],
        }
        want = {"id": case["id"], "results": case["results"]}
        if got != want:
            print("mismatch:\n %r\n got  %r\n want %r" % (case["header"], got, want))
            bad += 1
    return bad


def write_theirs(path):
    headers = [
        authres.AuthenticationResultsHeader(
            authserv_id="mx.example.com",
            results=[
                authres.DKIMAuthenticationResult(
                    result="pass", header_d="example.org", header_i="@example.org"
                ),
                authres.SPFAuthenticationResult(
                    result="fail", smtp_mailfrom="a@example.org", reason="not permitted"
                ),
            ],
        ),
        authres.AuthenticationResultsHeader(authserv_id="relay.example.com", results=[]),
        authres.AuthenticationResultsHeader(
            authserv_id="mx3.example.com",
            version="1",
            results=[authres.SPFAuthenticationResult(result="none", smtp_helo="h.example.org")],
        ),
    ]
    with open(path, "w", encoding="utf-8") as f:
        for h in headers:
            f.write("%s\t%s\n" % (h.authserv_id, str(h)))


def main():
    d = sys.argv[1]
    bad = check_ours(d + "/ours.json")
    write_theirs(d + "/theirs.txt")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
