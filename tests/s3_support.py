"""S3 for the tests: moto's server on loopback, and a fault-injecting HTTP proxy in front of it.

S3 itself cannot run here: ``moto``'s server (a real S3 HTTP endpoint on 127.0.0.1, random port) stands
in for it. The proxy is a small threaded HTTP server that forwards every request to moto unchanged
(the signature covers the Host header, which it keeps) unless told to misbehave: answer 500/503 with
S3's XML error body for the next N requests, read only half of a request's body and drop the
connection, or send half of a response's body and drop it.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY_ID, SECRET = "test-key", "test-secret-do-not-log"
_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}


@contextmanager
def moto_s3() -> Iterator[tuple[str, Any]]:
    """(endpoint, boto3 client) of a fresh moto server."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                          region_name="us-east-1")
    try:
        yield endpoint, client
    finally:
        client.close()
        server.stop()


def s3_settings(endpoint: str, store: str) -> dict[str, Any]:
    """Settings that put the artifact store on ``store`` (s3://bucket/prefix) at ``endpoint``."""
    return {"artifact_store": store, "s3_endpoint": endpoint, "s3_region": "us-east-1",
            "s3_access_key_id": KEY_ID, "s3_secret_access_key": SECRET}


def keys(client: Any, bucket: str, prefix: str) -> list[str]:
    """Every object key under ``prefix`` (asked of moto directly, never through a proxy)."""
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def open_uploads(client: Any, bucket: str, prefix: str) -> list[str]:
    """Multipart uploads started and neither completed nor aborted."""
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])]


@dataclass
class Fault:
    kind: str  # "status", "cut_request" or "cut_response"
    when: Callable[[str, str], bool]
    times: int
    status: int = 503


class FaultProxy:
    """Forwards to ``upstream`` (http://host:port); :meth:`fail`, :meth:`cut_request` and
    :meth:`cut_response` arm faults for the next matching requests."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.seen: list[tuple[str, str, int]] = []  # (method, path, status answered; 0: cut)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _arm(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def fail(self, times: int, status: int = 503, when: Callable[[str, str], bool] = lambda m, p: True) -> None:
        self._arm(Fault("status", when, times, status))

    def cut_request(self, times: int, when: Callable[[str, str], bool]) -> None:
        self._arm(Fault("cut_request", when, times))

    def cut_response(self, times: int, when: Callable[[str, str], bool]) -> None:
        self._arm(Fault("cut_response", when, times))

    def heal(self) -> None:
        with self._lock:
            self._faults.clear()

    def failures(self) -> int:
        return sum(1 for _, _, status in self.seen if status == 0 or status >= 500)

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.times > 0 and f.when(method, path):
                    f.times -= 1
                    return f
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        length = int(h.headers.get("Content-Length") or 0)
        fault = self._take(method, path)
        if fault is not None and fault.kind == "cut_request":
            h.rfile.read(length // 2)
            self._drop(h, method, path)
            return
        body = h.rfile.read(length) if length else b""
        if fault is not None and fault.kind == "status":
            code = "ServiceUnavailable" if fault.status == 503 else "InternalError"
            xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                   f"<Message>injected by the test proxy</Message></Error>").encode()
            h.send_response(fault.status)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(xml)))
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(xml)
            self.seen.append((method, path, fault.status))
            return
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            h.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    h.send_header(k, v)
            full = answer.getheader("Content-Length") if method == "HEAD" else str(len(data))
            h.send_header("Content-Length", full or "0")
            h.end_headers()
            if method == "HEAD":
                self.seen.append((method, path, answer.status))
                return
            if fault is not None and fault.kind == "cut_response":
                h.wfile.write(data[: len(data) // 2])
                h.wfile.flush()
                self._drop(h, method, path)
                return
            h.wfile.write(data)
            self.seen.append((method, path, answer.status))
        finally:
            conn.close()

    def _drop(self, h: BaseHTTPRequestHandler, method: str, path: str) -> None:
        self.seen.append((method, path, 0))
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
