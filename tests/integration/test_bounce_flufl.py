#!/usr/bin/python3
"""An outside oracle for the bounce reader: the real bounces that Debian's
python3-flufl.bounce (Mailman's bounce detectors) ships with its tests, read
in place from the installed package (never copied into this repository).

The oracle is flufl.bounce's own test table (DATA in
flufl/bounce/testing/helpers.py, read with ast, not imported: importing it
needs nose2): for each sample, the addresses its detectors must find and
whether they are temporary failures (warnings) or permanent ones. That
table tests one detector per row, so a sample it expects nothing from may
still be read by another of flufl's detectors: for those samples, and for
samples the table does not list (flufl's test_unrecognized one among them),
the oracle is flufl.bounce's whole chain (`all_failures`, what Mailman
runs). Where that finds nothing either, no address can be read: SMTPKit must
not invent a recipient there.

`smtpkit bounce --json` runs once over every sample. The test prints, by
family (the sample's name prefix, which names the MTA or provider), how many
samples name recipients, how many SMTPKit reads exactly right (every
expected address, nothing else) and how many it gives the right kind
(failed or delayed); and it fails when
  - fewer samples are right than the floor measured (a regression),
  - any recipient is invented on a sample that names none,
  - any recipient of a temporary sample, or any result that is delayed or
    has a 4.x.x status, would be suppressed.
Skips (77) only when python3-flufl.bounce is not installed."""

import ast
import collections
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

# Measured floors (docs/delivery.md): samples that name recipients and that
# SMTPKit reads exactly right, and those whose kind (failed/delayed) is right.
FLOOR_RIGHT = 105
FLOOR_KIND = 105

FAMILY_NAMES = {
    "dsn": "standard reports (RFC 3464)",
    "postfix": "Postfix",
    "exim": "Exim",
    "qmail": "qmail",
    "sendmail": "Sendmail",
    "llnl": "Sendmail (LLNL)",
    "microsoft": "Microsoft (Exchange, SMTPSVC)",
    "groupwise": "GroupWise",
    "yahoo": "Yahoo",
    "aol": "AOL",
    "smtp32": "SMTP32 (Ipswitch IMail)",
    "netscape": "Netscape Messaging Server",
    "yale": "Yale's Sendmail",
    "sina": "Sina",
    "simple": "assorted MTAs and providers",
    "bounce": "assorted MTAs and providers",
    "hotpop": "assorted MTAs and providers",
    "newmailru": "assorted MTAs and providers",
    "dumbass": "assorted MTAs and providers",
}


def flufl_paths():
    """The package's test directory, from the module's path, else dpkg -L."""
    try:
        import flufl.bounce.tests as t  # noqa: F401

        tests = os.path.dirname(os.path.abspath(t.__file__))
    except ImportError:
        tests = None
        try:
            out = subprocess.run(["dpkg", "-L", "python3-flufl.bounce"], capture_output=True,
                                 text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            if line.endswith("/flufl/bounce/tests/test_detectors.py"):
                tests = os.path.dirname(line)
    if not tests or not os.path.isdir(os.path.join(tests, "data")):
        return None, None
    return os.path.join(tests, "data"), os.path.join(os.path.dirname(tests), "testing",
                                                     "helpers.py")


def oracle(helpers):
    """file -> (set of expected addresses, temporary?) from flufl's DATA."""
    with open(helpers, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    data = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DATA"
                                                for t in node.targets):
            data = ast.literal_eval(node.value)
    sktest.check(data, "no DATA table in %s" % helpers)
    want = {}
    for row in data:
        fname, addrs = row[1], {a.decode("ascii").lower() for a in row[2]}
        temp = len(row) > 3 and bool(row[3])
        old = want.get(fname)
        # A sample listed twice (groupwise_02: nothing for one detector, an
        # address for another): what any of flufl's detectors finds.
        want[fname] = (addrs | (old[0] if old else set()), temp or (old[1] if old else False))
    return want


def whole_chain(path):
    """flufl.bounce's full chain on one sample: (addresses, temporary?)."""
    import email
    from flufl.bounce._scan import all_failures

    with open(path, "rb") as f:
        msg = email.message_from_binary_file(f)
    temporary, permanent = all_failures(msg)
    addrs = {a.decode("ascii", "replace").lower() for a in permanent | temporary}
    return addrs, bool(temporary) and not permanent


def family(fname):
    return FAMILY_NAMES.get(fname.split("_")[0], fname.split("_")[0])


def main():
    data_dir, helpers = flufl_paths()
    if not data_dir:
        print("skip: python3-flufl.bounce is not installed (scripts/deps.sh installs it)")
        sys.exit(sktest.SKIP)
    want = oracle(helpers)
    samples = sorted(f for f in os.listdir(data_dir) if f.endswith(".txt"))
    sktest.check(len(samples) >= 100, "only %d samples in %s" % (len(samples), data_dir))
    r = sktest.smtpkit("bounce", "--json", *[os.path.join(data_dir, f) for f in samples],
                       timeout=120)
    sktest.check(r.returncode in (0, 65), "smtpkit bounce: exit %d: %s" % (r.returncode,
                                                                           r.stderr))
    got = {os.path.basename(res["file"]): res for res in json.loads(r.stdout)}

    stats = collections.OrderedDict()
    failures, misses = [], []
    right = kind = named = 0
    for f in samples:
        addrs, temp = want.get(f, (set(), False))
        if not addrs:
            addrs, temp = whole_chain(os.path.join(data_dir, f))
        res = got.get(f) or {"recipients": [], "detector": None}
        rcpts = res["recipients"]
        found = {(x["recipient"] or "").lower() for x in rcpts}
        fam = stats.setdefault(family(f), collections.Counter())
        # Never a suppression from a temporary bounce.
        for x in rcpts:
            status = x.get("status") or ""
            if x["suppress"] and (temp or x["action"] == "delayed" or status.startswith("4.")):
                failures.append("%s: %s suppressed from a temporary bounce: %s"
                                % (f, x["recipient"], json.dumps(x)))
        if not addrs:
            fam["none"] += 1
            if found:
                failures.append("%s: names no recipient (flufl.bounce finds none), got %r"
                                % (f, sorted(found)))
            continue
        named += 1
        fam["named"] += 1
        if found == addrs:
            right += 1
            fam["right"] += 1
            want_action = "delayed" if temp else "failed"
            if all(x["action"] == want_action for x in rcpts):
                kind += 1
                fam["kind"] += 1
            else:
                misses.append("%s: kind: want %s, got %s" % (
                    f, want_action, [x["action"] for x in rcpts]))
        else:
            # The addresses as the bounce names them, where they differ
            # from the recipient (an alias's expansion, Original-Recipient).
            reported = {(x["reported"] or "").lower() for x in rcpts} - found
            misses.append("%s: want %s, got %s%s (detector %s)" % (
                f, sorted(addrs), sorted(found),
                " reported as %s" % sorted(reported) if reported else "", res["detector"]))

    print("%-34s %7s %6s %6s %6s" % ("family", "samples", "right", "kind", "none"))
    for fam, c in stats.items():
        print("%-34s %7d %6d %6d %6d" % (fam, c["named"], c["right"], c["kind"], c["none"]))
    print("total: %d samples name recipients; right recipients %d (%.1f%%), right kind %d "
          "(%.1f%%); %d name none" % (named, right, 100.0 * right / named, kind,
                                      100.0 * kind / named, len(samples) - named))
    for m in misses:
        print("miss:", m)
    if right < FLOOR_RIGHT:
        failures.append("right recipients on %d samples, below the floor of %d"
                        % (right, FLOOR_RIGHT))
    if kind < FLOOR_KIND:
        failures.append("right kind on %d samples, below the floor of %d" % (kind, FLOOR_KIND))
    if failures:
        sktest.fail("\n".join(failures))
    print("ok")


if __name__ == "__main__":
    main()
