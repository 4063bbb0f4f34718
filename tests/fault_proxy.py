"""A fault-injecting HTTP proxy for S3 tests: it sits between boto3 and moto's server.

Every request is forwarded unchanged (the Host header too) unless a programmed
fault matches it::

    proxy = FaultProxy(moto_endpoint)
    proxy.inject(INTERNAL_ERROR, method="PUT", path=r"/seg-1$", times=2)
    client = make_client(proxy.url)

Faults, for the next ``times`` matching requests (``times=None``: every one):

- ``INTERNAL_ERROR``: answer 500 InternalError (S3's XML error body), forward nothing.
- ``SLOW_DOWN``: answer 503 SlowDown, forward nothing.
- ``RESET_BEFORE``: reset the connection without forwarding: the request never happened.
- ``RESET_AFTER``: forward, let moto apply it, then reset the connection: the client
  sees an error although the request succeeded (the unknown outcome).
- ``DELAY``: wait ``delay`` seconds, then forward and answer (a client with a shorter
  read timeout has given up by then: the request lands late).
- ``HANG``: wait ``delay`` seconds, then reset without forwarding (a server that never answers).

``path`` is a regular expression searched in the request path with its query
(``/bucket/key?uploadId=...&partNumber=2``). ``requests`` records what came in and
what was done with it.
"""

from __future__ import annotations

import dataclasses
import http.client
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

INTERNAL_ERROR = "internal-error"
SLOW_DOWN = "slow-down"
RESET_BEFORE = "reset-before"
RESET_AFTER = "reset-after"
DELAY = "delay"
HANG = "hang"
KINDS = (INTERNAL_ERROR, SLOW_DOWN, RESET_BEFORE, RESET_AFTER, DELAY, HANG)

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}
_ERRORS = {
    INTERNAL_ERROR: (500, "InternalError", "We encountered an internal error. Please try again."),
    SLOW_DOWN: (503, "SlowDown", "Please reduce your request rate."),
}


@dataclasses.dataclass
class Fault:
    kind: str
    method: str | None
    path: re.Pattern[str]
    times: int | None
    delay: float
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path.search(path) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclasses.dataclass(frozen=True)
class Record:
    method: str
    path: str
    fault: str | None  # the fault applied, None when passed through
    upstream_status: int | None  # moto's answer, None when not forwarded


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname and parts.port, upstream
        self.upstream = (parts.hostname, parts.port)
        self.requests: list[Record] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.proxy = self  # type: ignore[attr-defined]
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def inject(
        self, kind: str, *, method: str | None = None, path: str = "", times: int | None = 1, delay: float = 2.0
    ) -> Fault:
        """Apply ``kind`` to the next ``times`` requests matching ``method`` and ``path``."""
        assert kind in KINDS, kind
        fault = Fault(kind, method, re.compile(path), times, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every programmed fault."""
        with self._lock:
            self._faults.clear()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being handled (a delayed one may still land)."""
        with self._idle:
            assert self._idle.wait_for(lambda: self._in_flight == 0, timeout), "proxy still busy"

    def count(self, method: str, path: str, *, fault: str | None | bool = False) -> int:
        """Requests seen matching ``method`` and ``path`` (and ``fault``, unless False)."""
        pattern = re.compile(path)
        return sum(
            1
            for r in list(self.requests)
            if r.method == method and pattern.search(r.path) and (fault is False or r.fault == fault)
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self._in_flight += 1
            for fault in self._faults:
                if not fault.exhausted and fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _done(self, record: Record) -> None:
        with self._lock:
            self.requests.append(record)
            self._in_flight -= 1
            self._idle.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue for botocore's large PUTs
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_HEAD = do_DELETE = do_GET

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy
        body = self._read_body()
        path = unquote(self.path)
        fault = proxy._take(self.command, path)
        kind = fault.kind if fault else None
        status = None
        try:
            if kind in _ERRORS:
                self._answer_error(*_ERRORS[kind])
            elif kind == RESET_BEFORE:
                self._reset()
            elif kind == HANG:
                time.sleep(fault.delay)  # type: ignore[union-attr]
                self._reset()
            else:
                if kind == DELAY:
                    time.sleep(fault.delay)  # type: ignore[union-attr]
                status, headers, data = self._forward(body)
                if kind == RESET_AFTER:
                    self._reset()
                else:
                    self._answer(status, headers, data)
        except OSError:
            self.close_connection = True  # the client went away (it timed out): nothing to answer
        finally:
            proxy._done(Record(self.command, path, kind, status))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.server.proxy.upstream, timeout=60)
        try:
            # The original Host header goes along: the request stays exactly as signed.
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    conn.putheader(name, value)
            if body or "Content-Length" in self.headers or "Transfer-Encoding" in self.headers:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers:
            if name.lower() in _HOP_BY_HOP or (name.lower() == "content-length" and self.command != "HEAD"):
                continue
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _answer_error(self, status: int, code: str, message: str) -> None:
        data = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", "fault-proxy")
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _reset(self) -> None:
        # SO_LINGER 0: closing sends a RST, not a FIN, and nothing is answered.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
