"""S3 over real HTTP: moto's threaded server on 127.0.0.1, one per test session.

``moto_server`` (session) starts the server on a free port (each pytest-xdist
worker gets its own) with dummy credentials in the environment. ``s3_bucket``
gives each test a fresh bucket with Object Lock enabled (and so versioning);
``s3_bucket_unlocked`` one without. Both are :class:`S3Bucket`: a boto3 client,
the bucket name and the endpoint URL, plus ``store(...)`` for an S3Store on it.

moto's ``If-None-Match: *`` is a check followed by a write, not one atomic step
as on AWS S3: two racing conditional PUTs can both succeed when a thread switch
falls between the two (rare, so a flaky test rather than a failing one). The
server here serialises the requests that write, which gives the conditional
write the atomicity real S3 has; reads still run in parallel.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import boto3
import botocore.config
import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from wormjournal.storage.names import is_safe_name
from wormjournal.storage.s3 import S3Store

REGION = "us-east-1"
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # Never read a developer's ~/.aws, never reach a real account.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
TEST_ENV_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _SerialWrites:
    """WSGI middleware: one writing request at a time (see the module docstring)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self.app(environ, start_response)
        with self.lock:
            # Drain the body inside the lock: the write happens while the response is built.
            return list(self.app(environ, start_response))


class _MotoServer(ThreadedMotoServer):
    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = _SerialWrites(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


def make_client(endpoint_url: str, *, attempts: int = 3, read_timeout: float = 10, **config: Any) -> Any:
    """A boto3 S3 client for the test server (or a proxy in front of it).

    ``attempts`` counts every try of a request: 1 means botocore never retries.
    """
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        config=botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=2,
            read_timeout=read_timeout,
            s3={"addressing_style": "path"},
            **config,
        ),
    )



@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server on 127.0.0.1, for the whole session."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in TEST_ENV.items():
            mp.setenv(k, v)
        for k in TEST_ENV_UNSET:
            mp.delenv(k, raising=False)
        server = _MotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@dataclasses.dataclass
class S3Bucket:
    """A fresh bucket on the test server and a client to inspect it behind the store's back."""

    client: Any
    name: str
    endpoint_url: str
    object_lock: bool

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.name}/{prefix}" if prefix else f"s3://{self.name}"

    def store(self, prefix: str = "", **kwargs: Any) -> S3Store:
        """An S3Store on this bucket, with the fixture's client unless one is given."""
        kwargs.setdefault("client", self.client)
        return S3Store(self.name, prefix, **kwargs)

    def versions(self, key: str) -> list[dict[str, Any]]:
        """Every stored version (and delete marker) of ``key``."""
        resp = self.client.list_object_versions(Bucket=self.name, Prefix=key)
        return [v for v in resp.get("Versions", []) + resp.get("DeleteMarkers", []) if v["Key"] == key]

    def all_versions(self, prefix: str = "") -> dict[str, list[dict[str, Any]]]:
        """Every stored version and delete marker under ``prefix``, by key."""
        out: dict[str, list[dict[str, Any]]] = {}
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if is_safe_name(v["Key"]):  # an object name, not a working object (.leases/)
                    out.setdefault(v["Key"], []).append(v)
        return out

    def assert_one_version_each(self, prefix: str = "") -> None:
        """Every key under ``prefix`` was stored exactly once: one version, no delete marker."""
        versions = self.all_versions(prefix)
        assert versions, f"nothing stored under {prefix!r}"
        many = {k: [v.get("VersionId") for v in vs] for k, vs in versions.items()
                if len(vs) != 1 or "Size" not in vs[0]}
        assert not many, f"keys stored more than once (or deleted): {many}"

    def keys(self) -> list[str]:
        resp = self.client.list_objects_v2(Bucket=self.name)
        return [o["Key"] for o in resp.get("Contents", []) if is_safe_name(o["Key"])]

    def uploads(self) -> list[dict[str, Any]]:
        """Multipart uploads begun and neither completed nor aborted."""
        return list(self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", []))


def _new_bucket(endpoint_url: str, *, object_lock: bool) -> S3Bucket:
    client = make_client(endpoint_url)
    name = f"wj-{uuid.uuid4().hex[:24]}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
    return S3Bucket(client=client, name=name, endpoint_url=endpoint_url, object_lock=object_lock)


@pytest.fixture
def s3_bucket(moto_server: str) -> S3Bucket:
    """A fresh bucket with Object Lock enabled (no default retention)."""
    return _new_bucket(moto_server, object_lock=True)


@pytest.fixture
def s3_bucket_unlocked(moto_server: str) -> S3Bucket:
    """A fresh bucket without Object Lock (nor versioning)."""
    return _new_bucket(moto_server, object_lock=False)
