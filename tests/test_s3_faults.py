"""S3 faults injected by a proxy in front of moto: 500, 503 SlowDown, resets, timeouts.

A put survives each transient fault with its object stored exactly once, bytes
intact; a reset after the server stored the object (the unknown outcome) ends in
an idempotent re-put, never a conflict; a fault that never clears raises
StorageError in bounded time and leaves nothing half-written behind.

botocore's retries are kept small here (1 or 2 attempts a request, short timeouts)
and the store's own backoff tiny, so that the suite stays fast.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fault_proxy import DELAY, HANG, INTERNAL_ERROR, RESET_AFTER, RESET_BEFORE, SLOW_DOWN, FaultProxy
from s3_fixtures import S3Bucket, make_client

from wormjournal.errors import ConflictError, NotFoundError, StorageError
from wormjournal.storage.s3 import S3Store

MiB = 1 << 20
READ_TIMEOUT = 0.5
SLOW = 1.5  # a DELAY / HANG: longer than READ_TIMEOUT
TRANSIENT = [INTERNAL_ERROR, SLOW_DOWN, RESET_BEFORE, RESET_AFTER, DELAY]
NEVER_LANDS = [INTERNAL_ERROR, SLOW_DOWN, RESET_BEFORE, HANG]  # the request never reaches moto


@pytest.fixture
def proxy(moto_server: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server) as p:
        yield p
        p.wait_idle()


MakeStore = Callable[..., S3Store]


@pytest.fixture
def via_proxy(proxy: FaultProxy, s3_bucket: S3Bucket) -> MakeStore:
    """``via_proxy(attempts=..., **store_kwargs)``: an S3Store on the bucket, through the proxy."""

    def make(*, attempts: int = 2, put_attempts: int = 3, read_timeout: float = READ_TIMEOUT,
             **kwargs: Any) -> S3Store:
        client = make_client(proxy.url, attempts=attempts, read_timeout=read_timeout)
        store = S3Store(s3_bucket.name, "p", client=client, put_attempts=put_attempts, **kwargs)
        store.backoff_base = 0.01
        return store

    return make


def assert_stored_once(bucket: S3Bucket, key: str, data: bytes) -> str:
    """``key`` holds ``data`` in exactly one version; that version's id."""
    versions = bucket.versions(key)
    assert len(versions) == 1, versions
    assert bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read() == data
    return str(versions[0]["VersionId"])


def assert_nothing_stored(bucket: S3Bucket) -> None:
    assert bucket.keys() == []
    assert bucket.versions("p/") == []
    assert bucket.uploads() == []


# -- transient faults: the put succeeds, once ---------------------------------------------


@pytest.mark.parametrize("attempts", [1, 2], ids=["store-retries", "botocore-retries"])
@pytest.mark.parametrize("kind", TRANSIENT)
def test_a_put_survives_a_transient_fault(
    proxy: FaultProxy, via_proxy: MakeStore, s3_bucket: S3Bucket, kind: str, attempts: int
) -> None:
    # attempts=1: botocore does not retry, so the store's own re-put must.
    store = via_proxy(attempts=attempts)
    data = os.urandom(1000)
    proxy.inject(kind, method="PUT", path=r"/p/seg$", delay=SLOW)
    result = store.put("seg", data)
    proxy.wait_idle()  # a delayed request lands late: it must find the object and change nothing
    assert proxy.count("PUT", r"/p/seg$", fault=kind) == 1
    version = assert_stored_once(s3_bucket, "p/seg", data)
    assert result.version_id == version
    if kind == RESET_AFTER:
        # The first PUT stored the object; the re-put found identical bytes.
        assert result.created is False
    elif kind != DELAY:
        assert result.created is True
    assert store.get("seg") == data


@pytest.mark.parametrize("attempts", [1, 2], ids=["store-retries", "botocore-retries"])
def test_a_reset_after_storing_is_an_idempotent_re_put_not_a_conflict(
    proxy: FaultProxy, via_proxy: MakeStore, s3_bucket: S3Bucket, attempts: int
) -> None:
    store = via_proxy(attempts=attempts, put_attempts=4)
    data = os.urandom(1000)
    proxy.inject(RESET_AFTER, method="PUT", path=r"/p/seg$", times=3)
    result = store.put("seg", data)
    assert result.created is False
    assert proxy.count("PUT", r"/p/seg$") == 4
    assert [r.upstream_status for r in proxy.requests if r.method == "PUT"] == [200, 412, 412, 412]
    assert result.version_id == assert_stored_once(s3_bucket, "p/seg", data)


@pytest.mark.parametrize("kind", TRANSIENT)
def test_a_read_survives_a_transient_fault(proxy: FaultProxy, via_proxy: MakeStore, kind: str) -> None:
    store = via_proxy(attempts=1)
    store.put("seg", b"0123456789")
    for method, call, expected in [
        ("GET", lambda: store.get("seg"), b"0123456789"),
        ("GET", lambda: store.get_range("seg", 2, 3), b"234"),
        ("HEAD", lambda: store.head("seg").size, 10),  # type: ignore[union-attr]
        ("GET", lambda: [o.name for o in store.list("")], ["seg"]),
    ]:
        proxy.inject(kind, method=method, delay=SLOW)
        assert call() == expected


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", r"\?uploads", SLOW_DOWN),  # CreateMultipartUpload
        ("PUT", r"partNumber=2", INTERNAL_ERROR),  # UploadPart
        ("PUT", r"partNumber=1", RESET_BEFORE),
        ("PUT", r"partNumber=3", RESET_AFTER),
        ("POST", r"uploadId=[^&]*$", INTERNAL_ERROR),  # CompleteMultipartUpload
        ("POST", r"uploadId=[^&]*$", RESET_AFTER),
    ],
    ids=["create-503", "part-500", "part-reset", "part-reset-after", "complete-500", "complete-reset-after"],
)
@pytest.mark.parametrize("attempts", [1, 2], ids=["store-retries", "botocore-retries"])
def test_a_multipart_put_survives_a_transient_fault(
    proxy: FaultProxy,
    via_proxy: MakeStore,
    s3_bucket: S3Bucket,
    method: str,
    path: str,
    kind: str,
    attempts: int,
) -> None:
    # moto takes its time to assemble 11 MiB on a loaded machine: a read timeout of its own, so that the only
    # retries are those of the injected fault (a timed-out complete retried while moto still completes it
    # races moto's own bookkeeping of the upload, not the store's)
    store = via_proxy(attempts=attempts, multipart_threshold=5 * MiB, part_size=5 * MiB, read_timeout=30)
    data = os.urandom(11 * MiB)
    proxy.inject(kind, method=method, path=path)
    result = store.put("big", data)
    assert proxy.count(method, path, fault=kind) == 1
    assert result.version_id == assert_stored_once(s3_bucket, "p/big", data)
    assert s3_bucket.uploads() == []  # every abandoned upload was aborted


# -- faults that never clear: a bounded failure, nothing half-written -----------------------


@pytest.mark.parametrize("kind", NEVER_LANDS)
def test_a_persistent_fault_raises_storage_error_in_bounded_time(
    proxy: FaultProxy, via_proxy: MakeStore, s3_bucket: S3Bucket, kind: str
) -> None:
    store = via_proxy(attempts=2, put_attempts=3)
    proxy.inject(kind, method="PUT", times=None, delay=SLOW)
    started = time.monotonic()
    with pytest.raises(StorageError) as exc:
        store.put("seg", b"data")
    elapsed = time.monotonic() - started
    assert not isinstance(exc.value, (ConflictError, NotFoundError))
    assert "seg" in str(exc.value) and "after 3 attempts" in str(exc.value)
    assert exc.value.__cause__ is not None
    assert elapsed < 15
    proxy.wait_idle()  # a HANG still holds the last request
    assert proxy.count("PUT", r"/p/seg$") == 6  # 3 puts x 2 botocore attempts
    assert_nothing_stored(s3_bucket)

    # Once the fault clears, the same put completes: the failure left nothing in its way.
    proxy.clear()
    assert store.put("seg", b"data").created is True


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", r"\?uploads"), ("PUT", r"partNumber=2"), ("POST", r"uploadId=[^&]*$")],
    ids=["create", "part", "complete"],
)
def test_a_persistent_multipart_fault_aborts_and_leaves_nothing(
    proxy: FaultProxy, via_proxy: MakeStore, s3_bucket: S3Bucket, method: str, path: str
) -> None:
    store = via_proxy(attempts=1, put_attempts=2, multipart_threshold=5 * MiB, part_size=5 * MiB)
    proxy.inject(INTERNAL_ERROR, method=method, path=path, times=None)
    data = os.urandom(11 * MiB)
    with pytest.raises(StorageError) as exc:
        store.put("big", data)
    assert "big" in str(exc.value) and "InternalError" in str(exc.value)
    assert_nothing_stored(s3_bucket)
    proxy.clear()
    assert store.put("big", data).created is True
    assert_stored_once(s3_bucket, "p/big", data)


def test_a_persistent_reset_after_storing_fails_but_the_next_put_completes(
    proxy: FaultProxy, via_proxy: MakeStore, s3_bucket: S3Bucket
) -> None:
    # Every PUT reaches moto and every answer is lost, the 412s of the re-puts too: the
    # store cannot know, and says so. A StorageError from put does not mean nothing was
    # stored; it means the outcome is unknown, and the object, if there, is whole.
    store = via_proxy(attempts=2)
    proxy.inject(RESET_AFTER, method="PUT", times=None)
    with pytest.raises(StorageError):
        store.put("seg", b"data")
    assert [r.upstream_status for r in proxy.requests if r.method == "PUT"] == [200] + [412] * 5
    version = assert_stored_once(s3_bucket, "p/seg", b"data")
    proxy.clear()
    result = store.put("seg", b"data")
    assert (result.created, result.version_id) == (False, version)


def test_a_reset_then_a_different_put_is_still_a_conflict(
    proxy: FaultProxy, via_proxy: MakeStore, s3_bucket: S3Bucket
) -> None:
    # Retrying must not weaken write-once: other bytes under a taken name are refused.
    store = via_proxy(attempts=1)
    store.put("seg", b"original")
    proxy.inject(RESET_BEFORE, method="PUT")
    with pytest.raises(ConflictError):
        store.put("seg", b"changed")
    assert_stored_once(s3_bucket, "p/seg", b"original")


def test_a_persistent_read_fault_is_a_storage_error_not_a_missing_object(
    proxy: FaultProxy, via_proxy: MakeStore
) -> None:
    store = via_proxy(attempts=1, put_attempts=2)
    store.put("seg", b"data")
    proxy.inject(SLOW_DOWN, method="GET", times=None)
    proxy.inject(SLOW_DOWN, method="HEAD", times=None)
    for call in (lambda: store.get("seg"), lambda: store.head("seg"), lambda: list(store.list(""))):
        with pytest.raises(StorageError) as exc:
            call()
        assert not isinstance(exc.value, NotFoundError)
        assert "SlowDown" in str(exc.value) or "503" in str(exc.value)  # a HEAD error has no body
