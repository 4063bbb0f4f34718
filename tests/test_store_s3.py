"""The S3 store on moto's server over HTTP: the Store contract, plus Object Lock and S3-only behaviour."""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from s3_fixtures import S3Bucket, make_client
from store_contract import StoreContract

from wormjournal.errors import ConfigError, ConflictError, NotFoundError, StorageError
from wormjournal.storage import s3 as s3_mod
from wormjournal.storage.s3 import S3Store, parse_s3_url, sha256_b64

try:
    from wormjournal.retention.policy import RetentionPolicy
except ImportError:  # the lead's module may not exist yet

    @dataclasses.dataclass(frozen=True)
    class RetentionPolicy:  # type: ignore[no-redef]
        mode: str = "COMPLIANCE"
        days: int = 1

        def retain_until(self, now: dt.datetime) -> dt.datetime:
            return now + dt.timedelta(days=self.days)


MiB = 1 << 20
PREFIX = "archive/prod"
READ_OPS = {"GetObject", "HeadObject", "ListObjectsV2", "GetObjectLockConfiguration"}
WRITE_OPS = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"}


class TestS3Store(StoreContract):
    """Under a prefix, on an Object Lock bucket, every object locked; neighbours outside the prefix."""

    @pytest.fixture
    def store(self, s3_bucket: S3Bucket) -> S3Store:
        for key in ("other/x", "archive/prodx/y", "archive/prod-z", "archive/x"):
            s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=b"neighbour")
        return s3_bucket.store(PREFIX, retention=RetentionPolicy("GOVERNANCE", 1))


class TestS3StoreAtTheBucketRoot(StoreContract):
    """No prefix, on a bucket without Object Lock and no retention (a development setup)."""

    @pytest.fixture
    def store(self, s3_bucket_unlocked: S3Bucket) -> S3Store:
        return s3_bucket_unlocked.store()


# -- helpers ------------------------------------------------------------------------


def record_calls(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every S3 operation the client is asked for, with its parameters, from now on."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    client.meta.events.register("before-parameter-build.s3.*", hook)
    return calls


def record_headers(client: Any) -> list[tuple[str, str, dict[str, str]]]:
    """(method, URL, headers) of every HTTP request the client sends, from now on."""
    sent: list[tuple[str, str, dict[str, str]]] = []

    def hook(request: Any, **_: Any) -> None:
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        sent.append((request.method, request.url, headers))

    client.meta.events.register("before-send.s3.*", hook)
    return sent


def ops(calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in calls]


def _utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC)


# -- Object Lock ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["COMPLIANCE", "GOVERNANCE"])
def test_every_put_carries_the_policys_lock_not_the_bucket_default(s3_bucket: S3Bucket, mode: str) -> None:
    # A bucket default that differs from the policy: the store must not rely on it.
    s3_bucket.client.put_object_lock_configuration(
        Bucket=s3_bucket.name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE" if mode == "COMPLIANCE" else "COMPLIANCE", "Days": 1}},
        },
    )
    policy = RetentionPolicy(mode, 30)
    store = s3_bucket.store("p", retention=policy, multipart_threshold=5 * MiB, part_size=5 * MiB)
    sent = record_headers(s3_bucket.client)
    before = dt.datetime.now(dt.UTC)
    store.put("small", b"x")
    store.put("big", os.urandom(6 * MiB))  # multipart
    after = dt.datetime.now(dt.UTC)

    def in_window(until: dt.datetime) -> bool:
        low = before + dt.timedelta(days=30) - dt.timedelta(seconds=1)
        return low <= until <= after + dt.timedelta(days=30, seconds=2)

    # On the wire: every request that creates an object names the policy's lock.
    creating = [(m, u, h) for m, u, h in sent if (m == "PUT" and "?" not in u) or u.endswith("?uploads")]
    assert len(creating) == 2, [(m, u) for m, u, _ in sent]
    for _, _, headers in creating:
        assert headers["x-amz-object-lock-mode"] == mode
        until = dt.datetime.fromisoformat(headers["x-amz-object-lock-retain-until-date"].replace("Z", "+00:00"))
        assert in_window(until)

    # As stored. moto (5.2) drops the lock headers of a multipart upload, so only the single PUT is checked.
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="p/small")
    assert head["ObjectLockMode"] == mode
    assert in_window(_utc(head["ObjectLockRetainUntilDate"]))
    lock = store.head_lock("small")
    assert lock["mode"] == mode
    assert _utc(lock["retain_until"]) == _utc(head["ObjectLockRetainUntilDate"])
    assert lock["version_id"] == head["VersionId"]


def test_version_ids_are_returned_and_match_head(s3_bucket: S3Bucket) -> None:
    store = s3_bucket.store(PREFIX, retention=RetentionPolicy("COMPLIANCE", 1))
    first = store.put("seg", b"bytes")
    assert first.created and first.version_id
    info = store.head("seg")
    assert info is not None and info.version_id == first.version_id
    again = store.put("seg", b"bytes")
    assert again.created is False
    assert again.version_id == first.version_id
    assert [v["VersionId"] for v in s3_bucket.versions(f"{PREFIX}/seg")] == [first.version_id]


def test_a_put_without_retention_works_on_an_unlocked_bucket(s3_bucket_unlocked: S3Bucket) -> None:
    store = s3_bucket_unlocked.store("dev")
    result = store.put("a/b", b"data")
    assert result.created
    assert store.get("a/b") == b"data"
    assert store.head_lock("a/b")["mode"] is None
    assert store.object_lock_enabled() is False


def test_a_locked_put_on_an_unlocked_bucket_fails_with_a_hint(s3_bucket_unlocked: S3Bucket) -> None:
    store = s3_bucket_unlocked.store(retention=RetentionPolicy("COMPLIANCE", 1))
    with pytest.raises(StorageError) as exc:
        store.put("a", b"data")
    assert not isinstance(exc.value, (ConflictError, NotFoundError))
    assert "Object Lock" in exc.value.hint
    assert store.head("a") is None


def test_object_lock_enabled(s3_bucket: S3Bucket, s3_bucket_unlocked: S3Bucket) -> None:
    assert s3_bucket.store().object_lock_enabled() is True
    assert s3_bucket_unlocked.store().object_lock_enabled() is False


def test_head_lock_of_a_missing_object_raises_not_found(s3_bucket: S3Bucket) -> None:
    with pytest.raises(NotFoundError):
        s3_bucket.store().head_lock("missing")


# -- multipart -------------------------------------------------------------------------


@pytest.fixture
def mp_store(s3_bucket: S3Bucket) -> S3Store:
    return s3_bucket.store(
        PREFIX, retention=RetentionPolicy("COMPLIANCE", 1), multipart_threshold=5 * MiB, part_size=5 * MiB
    )


def test_multipart_put_is_conditional_checksummed_and_idempotent(s3_bucket: S3Bucket, mp_store: S3Store) -> None:
    data = os.urandom(11 * MiB + 123)
    calls = record_calls(s3_bucket.client)
    first = mp_store.put("big/seg", data)
    assert first.created and first.size == len(data) and first.version_id
    assert ops(calls) == ["CreateMultipartUpload", "UploadPart", "UploadPart", "UploadPart", "CompleteMultipartUpload"]
    params = dict(calls)
    assert params["CreateMultipartUpload"]["ChecksumAlgorithm"] == "SHA256"
    parts = [p for op, p in calls if op == "UploadPart"]
    assert [len(p["Body"]) for p in parts] == [5 * MiB, 5 * MiB, MiB + 123]
    assert all(p["ChecksumSHA256"] == sha256_b64(p["Body"]) for p in parts)
    complete = params["CompleteMultipartUpload"]
    assert complete["IfNoneMatch"] == "*"
    assert [p["ChecksumSHA256"] for p in complete["MultipartUpload"]["Parts"]] == [p["ChecksumSHA256"] for p in parts]

    assert mp_store.get("big/seg") == data
    assert mp_store.get_range("big/seg", 5 * MiB - 2, 4) == data[5 * MiB - 2 : 5 * MiB + 2]
    info = mp_store.head("big/seg")
    assert info is not None and (info.size, info.version_id) == (len(data), first.version_id)

    calls.clear()
    again = mp_store.put("big/seg", data)
    assert (again.created, again.version_id) == (False, first.version_id)
    assert "AbortMultipartUpload" in ops(calls)  # the refused upload's parts are dropped
    assert s3_bucket.uploads() == []
    assert len(s3_bucket.versions(f"{PREFIX}/big/seg")) == 1


def test_multipart_put_of_different_bytes_conflicts(s3_bucket: S3Bucket, mp_store: S3Store) -> None:
    data = os.urandom(11 * MiB)
    mp_store.put("big/seg", data)
    changed = bytearray(data)
    changed[7 * MiB] ^= 1
    with pytest.raises(ConflictError) as exc:
        mp_store.put("big/seg", bytes(changed))
    assert "big/seg" in str(exc.value)
    assert mp_store.get("big/seg") == data
    assert s3_bucket.uploads() == []
    assert len(s3_bucket.versions(f"{PREFIX}/big/seg")) == 1


def test_a_multipart_put_over_a_single_part_object_compares_bytes(s3_bucket: S3Bucket) -> None:
    data = os.urandom(6 * MiB)
    s3_bucket.store("p").put("obj", data)  # single PUT: the threshold is 64 MiB
    mp = s3_bucket.store("p", multipart_threshold=5 * MiB, part_size=5 * MiB)
    assert mp.put("obj", data).created is False
    with pytest.raises(ConflictError):
        mp.put("obj", data[:-1] + bytes([data[-1] ^ 1]))  # always other bytes (a random last byte may be 0)


def test_a_failed_multipart_upload_is_aborted(s3_bucket: S3Bucket, mp_store: S3Store) -> None:
    def fail_third_part(params: dict[str, Any], **_: Any) -> None:
        if params.get("PartNumber") == 3:
            raise ValueError("injected")

    s3_bucket.client.meta.events.register("before-parameter-build.s3.UploadPart", fail_third_part)
    with pytest.raises(ValueError, match="injected"):
        mp_store.put("big/seg", os.urandom(11 * MiB))
    assert s3_bucket.uploads() == []
    assert mp_store.head("big/seg") is None


# -- read-only readers, and no weakening operation anywhere ------------------------------


def test_readers_never_call_a_write_api(s3_bucket: S3Bucket) -> None:
    writer = s3_bucket.store(PREFIX, retention=RetentionPolicy("COMPLIANCE", 1))
    writer.put("segments/a", b"0123456789")
    writer.put("journal.json", b"{}")

    reader_client = make_client(s3_bucket.endpoint_url)
    calls = record_calls(reader_client)
    reader = S3Store(s3_bucket.name, PREFIX, client=reader_client)
    assert reader.get("segments/a") == b"0123456789"
    assert reader.get_range("segments/a", 2, 3) == b"234"
    assert reader.get_range("segments/a", 20, 3) == b""
    assert reader.get_range("segments/a", 2, 0) == b""
    assert reader.head("journal.json") is not None
    assert reader.head("missing") is None
    assert [o.name for o in reader.list("")] == ["journal.json", "segments/a"]
    assert reader.object_lock_enabled()
    assert reader.head_lock("segments/a")["mode"] == "COMPLIANCE"
    with pytest.raises(NotFoundError):
        reader.get("missing")
    assert calls and set(ops(calls)) <= READ_OPS, ops(calls)


def test_the_store_only_ever_calls_creating_and_reading_operations(s3_bucket: S3Bucket, mp_store: S3Store) -> None:
    calls = record_calls(s3_bucket.client)
    mp_store.put("a", b"1")
    mp_store.put("a", b"1")
    with pytest.raises(ConflictError):
        mp_store.put("a", b"2")
    big = os.urandom(6 * MiB)
    mp_store.put("big", big)
    mp_store.put("big", big)
    with pytest.raises(ConflictError):
        mp_store.put("big", os.urandom(6 * MiB))
    list(mp_store.list(""))
    assert set(ops(calls)) <= READ_OPS | WRITE_OPS
    for op, params in calls:
        assert "BypassGovernanceRetention" not in params, op
        if op in ("PutObject", "CompleteMultipartUpload"):
            assert params["IfNoneMatch"] == "*", op
        if op == "PutObject":
            assert params["ChecksumSHA256"] == sha256_b64(params["Body"])


def test_the_s3_module_names_no_operation_that_weakens_a_lock() -> None:
    source = Path(s3_mod.__file__).read_text()
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    for forbidden in (
        "delete_object",
        "delete_objects",
        "put_object_lock_configuration",
        "put_bucket_lifecycle",
        "BypassGovernanceRetention",
        "copy_object",
    ):
        assert forbidden not in code, forbidden
    assert not hasattr(S3Store, "delete")


def test_the_s3_module_changes_locks_in_two_guarded_places_only() -> None:
    """A retention is changed only by extend_retention, after check_extension refused any shortening or
    downgrade; a legal hold only by set_legal_hold (placing or lifting a hold shortens nothing)."""
    tree = ast.parse(Path(s3_mod.__file__).read_text())
    callers: dict[str, list[str]] = {"put_object_retention": [], "put_object_legal_hold": []}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Attribute) and node.attr in callers:
                    callers[node.attr].append(fn.name)
    assert callers == {"put_object_retention": ["extend_retention"], "put_object_legal_hold": ["set_legal_hold"]}
    extend = next(f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "extend_retention")
    calls = [n for n in ast.walk(extend) if isinstance(n, ast.Call)]
    check = min(n.lineno for n in calls if isinstance(n.func, ast.Name) and n.func.id == "check_extension")
    put = min(n.lineno for n in ast.walk(extend) if isinstance(n, ast.Attribute) and n.attr == "put_object_retention")
    assert check < put


# -- listing ------------------------------------------------------------------------------


def test_list_pages_through_everything(s3_bucket: S3Bucket) -> None:
    store = s3_bucket.store(PREFIX)
    names = [f"m/{i:03d}" for i in range(7)]
    for name in reversed(names):
        store.put(name, name.encode())

    def small_pages(params: dict[str, Any], **_: Any) -> None:
        params["MaxKeys"] = 2

    s3_bucket.client.meta.events.register("before-parameter-build.s3.ListObjectsV2", small_pages)
    calls = record_calls(s3_bucket.client)
    assert [(o.name, o.size) for o in store.list("m/")] == [(n, len(n)) for n in names]
    assert ops(calls).count("ListObjectsV2") == 4


def test_list_skips_keys_that_are_not_object_names(s3_bucket: S3Bucket) -> None:
    store = s3_bucket.store(PREFIX)
    store.put("a/ok", b"1")
    for key in ("a//double", "a/.hidden", "a/dir/", ".wal/x", "a/./dot", "a/../up"):
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/{key}", Body=b"x")
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/", Body=b"")  # a folder marker
    assert [o.name for o in store.list("")] == ["a/ok"]
    assert [o.name for o in store.list("a/")] == ["a/ok"]
    assert list(store.list(".wal/")) == []


def test_list_in_utf8_name_order(s3_bucket: S3Bucket) -> None:
    store = s3_bucket.store()
    names = ["b", "a~", "a\u00e9", "a\U0001f600", "aZ", "a-"]
    for name in names:
        store.put(name, b"1")
    assert [o.name for o in store.list("")] == sorted(names)


# -- errors ------------------------------------------------------------------------------


def test_a_missing_bucket_is_not_found_with_a_hint(moto_server: str) -> None:
    store = S3Store("wj-no-such-bucket", "p", client=make_client(moto_server), put_attempts=1)
    for call in (lambda: store.get("a"), lambda: list(store.list("")), lambda: store.put("a", b"1")):
        with pytest.raises(NotFoundError) as exc:
            call()
        assert "wj-no-such-bucket" in str(exc.value)
        assert "object-lock-enabled-for-bucket" in exc.value.hint
        assert exc.value.__cause__ is not None


@pytest.mark.parametrize("method", ["get_object", "head_object", "put_object", "list_objects_v2"])
def test_access_denied_is_a_storage_error_with_a_hint(method: str) -> None:
    client = make_client("http://127.0.0.1:9")
    store = S3Store("bucket", "p", client=client, put_attempts=1)
    with Stubber(client) as stub:
        stub.add_client_error(method, service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(StorageError) as exc:
            {
                "get_object": lambda: store.get("a"),
                "head_object": lambda: store.head("a"),
                "put_object": lambda: store.put("a", b"1"),
                "list_objects_v2": lambda: list(store.list("")),
            }[method]()
    assert not isinstance(exc.value, (NotFoundError, ConflictError))
    assert "access denied" in str(exc.value)
    assert "s3:GetObject" in exc.value.hint
    assert exc.value.__cause__ is not None


def test_a_corrupt_stored_object_is_refused_on_read(s3_bucket: S3Bucket) -> None:
    # moto does not verify checksums on upload, so a lying checksum gets stored; reads check it.
    s3_bucket.client.put_object(
        Bucket=s3_bucket.name,
        Key="p/obj",
        Body=b"tampered",
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=sha256_b64(b"original"),
    )
    store = s3_bucket.store("p", put_attempts=2)
    store.backoff_base = 0.001
    with pytest.raises(StorageError) as exc:
        store.get("obj")
    assert "obj" in str(exc.value)
    assert not isinstance(exc.value, NotFoundError)


# -- construction -----------------------------------------------------------------------


def test_url_and_from_url(s3_bucket: S3Bucket) -> None:
    assert s3_bucket.store("a/b").url == f"s3://{s3_bucket.name}/a/b"
    assert s3_bucket.store().url == f"s3://{s3_bucket.name}"
    assert parse_s3_url("s3://bkt/some/prefix/") == ("bkt", "some/prefix")
    assert parse_s3_url("s3://bkt") == ("bkt", "")
    store = S3Store.from_url(f"s3://{s3_bucket.name}/x/", client=s3_bucket.client)
    assert (store.bucket, store.prefix, store.url) == (s3_bucket.name, "x", f"s3://{s3_bucket.name}/x")
    store.put("n", b"1")
    assert s3_bucket.keys() == ["x/n"]


def test_the_default_client_honours_the_endpoint(moto_server: str, s3_bucket: S3Bucket) -> None:
    store = S3Store(s3_bucket.name, "p", endpoint_url=moto_server)
    assert store.client.meta.config.retries["mode"] == "standard"
    assert store.put("a", b"1").created
    assert s3_bucket.keys() == ["p/a"]


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("",), {}, "bucket"),
        (("b/c",), {}, "bucket"),
        (("bkt", "../up"), {}, "prefix"),
        (("bkt", "a//b"), {}, "prefix"),
        (("bkt",), {"part_size": MiB}, "part_size"),
        (("bkt",), {"put_attempts": 0}, "put_attempts"),
        (("bkt",), {"multipart_threshold": -1}, "multipart_threshold"),
        (("bkt",), {"retention": dataclasses.make_dataclass("P", ["mode", "days"])("LEGAL", 1)}, "mode"),
    ],
)
def test_bad_arguments_are_refused(args: tuple[str, ...], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        S3Store(*args, client=object(), **kwargs)


@pytest.mark.parametrize("url", ["s3:/bkt", "s3://", "http://bkt/x", "s3://bkt/x?y=1", "bkt/x"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(url)):
        parse_s3_url(url)
