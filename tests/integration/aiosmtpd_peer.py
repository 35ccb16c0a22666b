"""The one aiosmtpd peer of the integration tests: an SMTP server on loopback
that records what it is sent and answers as the test scripts it.

Peer(...) is the server (a context manager); PeerHandler is its aiosmtpd
handler, reachable as peer.handler (and peer.recorder, the older name).
send_peer.Smtpd, mx_peers.MXHost, delivery_peers.MX and probe_peers.Smtpd
are this class with the defaults their tests need.
"""

import asyncio
import base64
import logging
import os
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword  # noqa: E402

# aiosmtpd logs a warning about its own use of a deprecated attribute on
# each AUTH; keep the test output to what matters.
logging.getLogger("mail.log").setLevel(logging.ERROR)

HOST = "127.0.0.1"
QUEUE_ID = "SKTEST42"


class PeerHandler:
    """aiosmtpd handler that records each transaction and answers as told.

    rcpt_replies maps a recipient (or "@domain" for every recipient there)
    to the reply its RCPT gets: a string for every RCPT, or a list of
    replies for the successive RCPTs (None in the list, or the list running
    out, accepts). data_replies does the same for the reply after DATA,
    keyed by the message's first recipient; data_reply answers every DATA,
    mail_reply every MAIL. A 421 reply closes the connection after it is
    written (RFC 5321 3.8). tokens ({user: token}) also offers XOAUTH2.
    ehlo_extra adds keywords to the EHLO reply; strip_params drops those
    MAIL/RCPT parameters before aiosmtpd (which knows only a few) sees them.

    Recorded: messages (accepted transactions), rcpts ((time, address,
    reply) of every RCPT), auth_logins ((mechanism, user) of every AUTH),
    lines (every MAIL and RCPT argument as received, when the peer records
    lines), data_attempts (DATA commands, accepted or not).
    """

    def __init__(self, rcpt_replies=None, data_replies=None, data_reply=None, mail_reply=None,
                 tokens=None, ehlo_extra=(), strip_params=()):
        self.rcpt_replies = {k.lower(): (list(v) if isinstance(v, list) else v)
                             for k, v in (rcpt_replies or {}).items()}
        self.data_replies = {k.lower(): list(v) for k, v in (data_replies or {}).items()}
        self.data_reply = data_reply
        self.mail_reply = mail_reply
        self.tokens = tokens
        self.ehlo_extra = list(ehlo_extra)
        self.strip_params = {p.upper() for p in strip_params}
        self.lock = threading.Lock()
        self.messages = []
        self.rcpts = []
        self.auth_logins = []
        self.lines = []
        self.data_attempts = 0
        if tokens:
            # aiosmtpd offers each auth_<NAME> member of the handler.
            self.auth_XOAUTH2 = self._auth_xoauth2

    @property
    def got_data(self):
        """True once a client sent DATA."""
        return self.data_attempts > 0

    @staticmethod
    def _next(script, addr):
        domain = "@" + addr.rpartition("@")[2].lower()
        for key in (addr, addr.lower(), domain):
            seq = script.get(key)
            if isinstance(seq, str):
                return seq
            if seq:
                return seq.pop(0)
        return None

    @staticmethod
    def _close_after(server, reply):
        if reply.startswith("421"):
            # transport.close flushes the reply first.
            asyncio.get_running_loop().call_soon(server.transport.close)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # Before the last line ("250 HELP").
        return responses[:-1] + ["250-" + k for k in self.ehlo_extra] + responses[-1:]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            self._close_after(server, self.mail_reply)
            return self.mail_reply
        # When the transaction began: on a reused connection that follows
        # the sender's decision to send with the least delay (the DATA
        # phase adds round trips whose timing varies with the load).
        envelope.sk_mail_time = time.monotonic()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            reply = self._next(self.rcpt_replies, address)
            self.rcpts.append((time.monotonic(), address, reply or "250"))
        if reply:
            self._close_after(server, reply)
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.data_attempts += 1
            reply = self.data_reply or self._next(self.data_replies, envelope.rcpt_tos[0])
            if reply is None:
                self.messages.append({
                    "time": time.monotonic(),
                    "mail_time": getattr(envelope, "sk_mail_time", None),
                    "wall": time.time(),
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": list(envelope.rcpt_tos),
                    "mail_options": list(envelope.mail_options),
                    "data": bytes(envelope.original_content),
                    # session.ssl is set by STARTTLS only; implicit TLS
                    # shows on the transport.
                    "tls": session.ssl is not None
                    or server.transport.get_extra_info("ssl_object") is not None,
                    "auth": session.authenticated,
                })
        if reply:
            self._close_after(server, reply)
            return reply
        return "250 2.0.0 Ok: queued as " + QUEUE_ID

    def authenticator(self, users):
        """AUTH PLAIN and LOGIN accepting users ({name: password})."""

        def check(server, session, envelope, mechanism, auth_data):
            if not isinstance(auth_data, LoginPassword):
                return AuthResult(success=False, handled=False)
            user = auth_data.login.decode("utf-8", "replace")
            pw = auth_data.password.decode("utf-8", "replace")
            with self.lock:
                self.auth_logins.append((mechanism, user))
            # handled=False: aiosmtpd then answers a failure with 535 itself.
            return AuthResult(success=users.get(user) == pw, handled=False)

        return check

    async def _auth_xoauth2(self, server, args):
        # "user=" user ^A "auth=Bearer " token ^A ^A, base64, as the initial
        # response or after an empty challenge.
        blob = args[1] if len(args) > 1 else await server.challenge_auth("")
        if isinstance(blob, str):
            blob = blob.encode()
        try:
            fields = base64.b64decode(blob).decode().split("\x01")
            kv = dict(f.split("=", 1) for f in fields if f)
            user, token = kv["user"], kv["auth"].split(" ", 1)[1]
        except (ValueError, KeyError, IndexError, UnicodeDecodeError):
            return AuthResult(success=False, handled=False)
        with self.lock:
            self.auth_logins.append(("XOAUTH2", user))
        return AuthResult(success=self.tokens.get(user) == token, handled=False)


class _RecordingSMTP(SMTP):
    """Keeps each MAIL and RCPT argument as received and drops the
    handler's strip_params before aiosmtpd parses them."""

    async def _raw(self, verb, arg, parent):
        h = self.event_handler
        with h.lock:
            h.lines.append("%s %s" % (verb, arg))
        if h.strip_params and arg:
            arg = " ".join(t for t in arg.split(" ")
                           if t.split("=", 1)[0].upper() not in h.strip_params)
        return await parent(arg)

    async def smtp_MAIL(self, arg):
        return await self._raw("MAIL", arg, super().smtp_MAIL)

    async def smtp_RCPT(self, arg):
        return await self._raw("RCPT", arg, super().smtp_RCPT)


class _Controller(Controller):
    """Controller that notes when each connection came (factory is called
    once per connection) and serves with _RecordingSMTP when asked."""

    def __init__(self, handler, record_lines=False, **kw):
        super().__init__(handler, **kw)
        self.record_lines = record_lines
        self.conn_times = []

    @property
    def connections(self):
        return len(self.conn_times)

    def factory(self):
        self.conn_times.append(time.monotonic())
        if self.record_lines:
            return _RecordingSMTP(self.handler, **self.SMTP_kwargs)
        return super().factory()


class Peer:
    """An aiosmtpd server on host:port (a free port when port is None).

    name: the host name it greets with. tls: None (plain), "starttls"
    (offered, optional) or "implicit", with cert=(cert_path, key_path).
    users: {"name": "password"} enables AUTH PLAIN and LOGIN (over TLS only
    unless auth_require_tls=False); tokens: {"name": "token"} XOAUTH2.
    size_limit is announced as SIZE (RFC 1870). smtputf8 announces
    SMTPUTF8. record_lines keeps every MAIL/RCPT argument as received (see
    lines()). The other keywords script the replies (see PeerHandler).
    """

    def __init__(self, host=HOST, port=None, name="mx.test", tls=None, cert=None, users=None,
                 tokens=None, auth_require_tls=True, size_limit=None, smtputf8=True,
                 record_lines=False, **handler_kw):
        self.handler = PeerHandler(tokens=tokens, **handler_kw)
        self.port = port if port is not None else sktest.free_port(host)
        kw = dict(hostname=host, port=self.port, server_hostname=name,
                  enable_SMTPUTF8=smtputf8, auth_require_tls=auth_require_tls)
        if tls not in (None, "starttls", "implicit"):
            raise ValueError("tls must be None, 'starttls' or 'implicit', not %r" % tls)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert[0], cert[1])
            kw["tls_context" if tls == "starttls" else "ssl_context"] = ctx
        if size_limit is not None:
            kw["data_size_limit"] = size_limit
        if users is not None or tokens:
            kw["authenticator"] = self.handler.authenticator(users or {})
        self.controller = _Controller(self.handler, record_lines=record_lines, **kw)

    @property
    def recorder(self):
        return self.handler

    @property
    def messages(self):
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def conn_times(self):
        return list(self.controller.conn_times)

    @property
    def connections(self):
        return self.controller.connections

    def to(self, addr):
        """Accepted messages that had addr among their recipients."""
        return [m for m in self.messages if addr in m["rcpt_tos"]]

    def lines(self):
        """Every MAIL and RCPT argument as received (record_lines=True)."""
        with self.handler.lock:
            return list(self.handler.lines)

    def start(self):
        self.controller.start()
        # start() connects once to see that the server is up: not a client.
        self.controller.conn_times.clear()
        return self

    def stop(self):
        self.controller.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
