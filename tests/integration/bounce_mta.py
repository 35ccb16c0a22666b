"""What the tests that make bounces with a real MTA share
(test_bounce_postfix, test_bounce_exim, test_bounce_sendmail,
test_bounce_opensmtpd, test_bounce_courier).

Each of them has its MTA relay mail for far.test to an aiosmtpd peer on
loopback (peer()) that refuses the recipients of its cases as they say, and
reads the reports the MTA sends back to the sender through the same peer
with `smtpkit bounce --json` (check_reports()): the detector, the
recipient, the action, the class and whether it suppresses must be the
case's, and every case must have its report. Where `smtpkit bounce` has a
text detector for the MTA, each report is read again with its status part
removed (strip_status()), by that detector.

What is the MTA's own stays in its test: its configuration, how it is
started, fed and stopped (by PID), its cases and what its reports say. A
report is known by its key, (recipient, kind): the test's classify(m) tells
the key of a message the peer got, FAILED, DELAYED (a delay warning) or
EXPIRED (a notice that says the message was given up, where the MTA labels
it apart from a failure).
"""

import collections
import contextlib
import email
import json
import os
import pwd
import re
import shutil
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from aiosmtpd_peer import Peer  # noqa: E402

SENDER = "alice@origin.test"
PEER_NAME = "mx.far.test"
# The case the peer refuses after DATA (the message too large); the other
# cases' replies come at RCPT.
BIG = "big@far.test"
# The refusals every test's peer makes, recipient: (the peer's reply; the
# class and the suppression the report must get). A test's CASES add its
# own.
REFUSALS = {
    "unknown@far.test": ("550 5.1.1 <unknown@far.test>: Recipient address rejected: User unknown",
                         "bad-mailbox", True),
    "full@far.test": ("552 5.2.2 <full@far.test>: Mailbox full", "mailbox-full", False),
    BIG: ("552 5.3.4 Message size exceeds fixed maximum message size", "message-too-big", False),
}
# Refused until the MTA gives up on it (its report says expired).
LATER = "later@far.test"
LATER_REPLY = "451 4.3.0 <later@far.test>: try again later"
GIVEN_UP = {LATER: (LATER_REPLY, "expired", False)}
# Refused until the MTA warns that it is delayed (release() then lets it
# through, where the test does).
HELD = "slow@far.test"
HELD_REPLY = "451 4.3.0 <slow@far.test>: try again later"

FAILED = "failed"
DELAYED = "delayed"
EXPIRED = "expired"

# What `smtpkit bounce --json` must say of a report: its action, class
# (None: any, as for a delay warning), whether it suppresses and, where
# not None, the remote reply it gives.
Want = collections.namedtuple("Want", "action cls suppress reply", defaults=(None,))
WARNING = Want("delayed", None, False)


def failures_of(cases):
    """{(recipient, FAILED): Want} of a test's cases, {recipient: (reply,
    class, suppress)}."""
    return {(rcpt, FAILED): Want("failed", c[1], c[2]) for rcpt, c in cases.items()}


def warnings_about(rcpts):
    """{(recipient, DELAYED): WARNING} for each recipient."""
    return {(rcpt, DELAYED): WARNING for rcpt in rcpts}


def parse_args(prog):
    """The directory of --write DIR (the reports are also saved there, one
    of each key), or None. Anything else: usage, exit 64."""
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        return sys.argv[2]
    if len(sys.argv) != 1:
        sys.stderr.write("usage: %s [--write DIR]\n" % prog)
        sys.exit(64)
    return None


def skip(why):
    print("SKIP: " + why)
    sys.exit(sktest.SKIP)


def need_root(program, what):
    """Skip unless run as root with program executable."""
    if os.geteuid() != 0 or not os.access(program, os.X_OK):
        skip("needs root and " + what)


def need_users(*names):
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            skip("no user %s (scripts/deps.sh creates it)" % name)


def need_programs(*names):
    if not all(shutil.which(p) for p in names):
        skip("needs " + ", ".join(names))


@contextlib.contextmanager
def scratch(prefix):
    """A sktest.TempDir removed at the end, or kept (and named) with
    SK_KEEP_TMP."""
    tmp = sktest.TempDir(prefix)
    try:
        yield tmp
    finally:
        if os.environ.get("SK_KEEP_TMP"):
            print("kept", tmp.path)
        else:
            tmp.cleanup()


def message(rcpt, size=0, eol=b"\r\n"):
    """The test message from SENDER to rcpt, its body padded to about size
    octets."""
    local = rcpt.split("@")[0].encode()
    head = [b"From: " + SENDER.encode(), b"To: " + rcpt.encode(), b"Subject: test " + rcpt.encode(),
            b"Message-ID: <%s@origin.test>" % local]
    body = [b"Hello."] + [b"x" * 70] * (size // 72)
    return eol.join(head) + eol + eol + b"".join(line + eol for line in body)


def peer(cases, held=None):
    """The refusing peer: each case's reply (None: the MTA refuses itself)
    at RCPT, BIG's after DATA; held ({recipient: reply}) adds refusals the
    test lifts itself (release())."""
    replies = {rcpt: c[0] for rcpt, c in cases.items() if c[0] is not None and rcpt != BIG}
    replies.update(held or {})
    return Peer(name=PEER_NAME, rcpt_replies=replies, data_replies={BIG: [cases[BIG][0]]})


def submit_smtp(port, rcpts):
    """Each recipient its own message, by SMTP to the MTA on loopback."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        for rcpt in rcpts:
            c.sendmail(SENDER, [rcpt], message(rcpt))


def bounces(peer):
    """What the peer got from the null sender."""
    return [m for m in peer.messages if m["mail_from"] in ("", "<>")]


def returned_to(data):
    """The recipient a report is about: the To of the returned message."""
    m = email.message_from_bytes(data)
    for part in m.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) else email.message_from_string(payload)
            return inner["To"]
    return None


def by_subject(warning_prefix=None):
    """classify() for MTAs whose delay warnings' Subject starts with
    warning_prefix (None: the MTA sends none here): (the returned message's
    To, DELAYED or FAILED)."""

    def classify(m):
        subject = email.message_from_bytes(m["data"])["Subject"] or ""
        warning = warning_prefix is not None and subject.startswith(warning_prefix)
        return returned_to(m["data"]), DELAYED if warning else FAILED

    return classify


def release(peer, rcpt, classify):
    """Let rcpt through once a delay warning about it came."""
    if (rcpt, DELAYED) in {classify(m) for m in bounces(peer)}:
        peer.handler.rcpt_replies.pop(rcpt, None)


def wait_reports(peer, classify, wants, timeout, interval, each=None, log=None):
    """Wait until the peer got a report of each key of wants, calling
    each() (a queue run, release()) every interval; fail naming what came,
    with log() (the MTA's log) if given. Returns the reports."""

    def done():
        return set(wants) <= {classify(m) for m in bounces(peer)}

    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(interval)
        if each:
            each()
    got = bounces(peer)
    sktest.check(done(), "want %s, got %s%s" % (
        sorted(wants), sorted((classify(m) for m in got), key=repr),
        "\n--- the MTA's log ---\n" + log() if log else ""))
    return got


def strip_status(data):
    """The report without its message/delivery-status part: what a gateway
    that drops unknown parts forwards (derived from the real report)."""
    text = data.decode("utf-8", "replace")
    m = re.search(r'boundary="?([^";\s]+)"?', text)
    sktest.check(m, "a report without a MIME boundary: %r" % text[:500])
    boundary = "--" + m.group(1)
    parts = text.split(boundary)
    kept = [p for p in parts if "message/delivery-status" not in p.split("\n\n", 1)[0].lower()]
    sktest.check(len(kept) == len(parts) - 1, "want one status part, found %d: %r" % (
        len(parts) - len(kept), text[:500]))
    return boundary.join(kept).encode()


def report_name(rcpt, kind, suffixes, n):
    """The file of the n-th report of (rcpt, kind): the recipient's local
    part and the kind's suffix (tests/bounces/MTA is named so)."""
    local = re.sub(r"[^a-z0-9]+", "-", (rcpt or "unknown").split("@")[0].lower())
    return "%s%s%s.eml" % (local, suffixes[kind], "" if n == 1 else "-%d" % n)


def check_reports(root, got, classify, wants, reporting_mta, text_detector=None,
                  text_reporting_mta=None, optional=None, suffixes=None, write_dir=None):
    """Read every report of got with `smtpkit bounce --json` and fail with
    all that is wrong. wants ({key: Want}, or a function of the report's
    bytes that returns one) must each come; optional ones may. A failure or
    expiry comes once, a delay warning may come again (each is read). Each
    report is read by the rfc3464 detector from reporting_mta and, with
    text_detector, again without its status part by that detector (from
    text_reporting_mta, by default the same). suffixes: {kind: the file
    name's suffix}. With write_dir the first report of each key is copied
    there. Returns how many reports were read."""
    allowed = dict(optional or {})
    allowed.update(wants)
    suffixes = suffixes or {FAILED: "", DELAYED: "-delayed", EXPIRED: "-expired"}
    failures = []
    counts = collections.Counter()
    files = []  # (path, detector, reporting MTA, key, Want)
    for m in got:
        key = classify(m)
        counts[key] += 1
        if key not in allowed:
            failures.append("a report about %r (%s)" % key)
            continue
        want = allowed[key]
        if callable(want):
            want = want(m["data"])
        name = report_name(key[0], key[1], suffixes, counts[key])
        path = os.path.join(root, name)
        with open(path, "wb") as f:
            f.write(m["data"])
        if write_dir and counts[key] == 1:
            shutil.copy(path, os.path.join(write_dir, name))
        files.append((path, "rfc3464", reporting_mta, key, want))
        if text_detector:
            text = os.path.join(root, "text-" + name)
            with open(text, "wb") as f:
                f.write(strip_status(m["data"]))
            files.append((text, text_detector, text_reporting_mta or reporting_mta, key, want))
    for key, n in sorted(counts.items(), key=repr):
        if n > 1 and key[1] != DELAYED:
            failures.append("%d reports about %r (%s), want one" % ((n,) + key))
    missing = set(wants) - set(counts)
    if missing:
        failures.append("no report for %s" % sorted(missing))
    if files:
        r = sktest.smtpkit("bounce", "--json", *[f[0] for f in files], timeout=60)
        sktest.check(r.returncode == 0, "smtpkit bounce: exit %d: %s %s" % (
            r.returncode, r.stdout, r.stderr))
        results = json.loads(r.stdout)
        sktest.check(len(results) == len(files), "smtpkit bounce: %d results for %d files" % (
            len(results), len(files)))
        for (path, detector, mta, (rcpt, kind), want), res in zip(files, results):
            rs = res["recipients"]
            ok = (res["detector"] == detector and len(rs) == 1 and rs[0]["recipient"] == rcpt
                  and rs[0]["action"] == want.action and rs[0]["suppress"] == want.suppress
                  and (want.cls is None or rs[0]["class"] == want.cls)
                  and (want.reply is None or rs[0].get("reply") == want.reply)
                  and res["reporting_mta"] == mta)
            if not ok:
                failures.append("%s (%s, %s): want %s %s %s suppress=%s%s from %s, got %s" % (
                    os.path.basename(path), rcpt, kind, detector, want.action, want.cls,
                    want.suppress, "" if want.reply is None else " reply %r" % want.reply, mta,
                    json.dumps(res)))
    if failures:
        sktest.fail("\n".join(failures))
    return len(got)
