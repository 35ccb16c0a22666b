#!/usr/bin/python3
"""The webhook benchmark's receiver: HTTP/1.1 with keep-alive on loopback,
one asyncio protocol per connection (no thread per request), answering
every POST 200 at once. It counts the requests and their distinct
webhook-id values, and keeps the time of the first and of the last.

Usage: webhook_receiver.py PORT_FILE [EXPECT]
Writes the port it listens on to PORT_FILE; when EXPECT distinct events
have arrived (or on SIGTERM) it prints one JSON line
{"requests", "events", "first", "last", "seconds", "per_second"} and exits."""

import asyncio
import json
import os
import signal
import socket
import sys
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
# A request's header block may not be longer (the server's are about 300).
HEAD_MAX = 16384


class State:
    def __init__(self, expect):
        self.expect = expect
        self.requests = 0
        self.ids = set()
        self.first = self.last = None
        self.done = asyncio.get_running_loop().create_future()

    def report(self):
        span = (self.last - self.first) if self.first is not None else 0.0
        n = len(self.ids)
        return {"requests": self.requests, "events": n, "seconds": round(span, 4),
                "per_second": round((n - 1) / span, 1) if n > 1 and span > 0 else None}


class Conn(asyncio.Protocol):
    def __init__(self, st):
        self.st = st
        self.buf = b""
        self.tr = None

    def connection_made(self, transport):
        self.tr = transport

    def data_received(self, data):
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > HEAD_MAX:
                    self.tr.close()
                return self._flush(out)
            head = self.buf[:end].decode("latin-1").split("\r\n")
            length, wid = 0, None
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "webhook-id":
                    wid = value.strip()
            if len(self.buf) < end + 4 + length:
                return self._flush(out)
            self.buf = self.buf[end + 4 + length:]
            st = self.st
            now = time.monotonic()
            if st.first is None:
                st.first = now
            st.last = now
            st.requests += 1
            if wid:
                st.ids.add(wid)
            out.append(OK)
            if st.expect and len(st.ids) >= st.expect and not st.done.done():
                st.done.set_result(True)

    def _flush(self, out):
        if out:
            self.tr.write(b"".join(out))


async def main():
    port_file = sys.argv[1]
    expect = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    st = State(expect)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: st.done.done() or st.done.set_result(False))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = await loop.create_server(lambda: Conn(st), sock=sock, backlog=1024)
    with open(port_file + ".tmp", "w") as f:
        f.write("%d\n" % sock.getsockname()[1])
    os.rename(port_file + ".tmp", port_file)
    await st.done
    server.close()
    print(json.dumps(st.report()), flush=True)


asyncio.run(main())
