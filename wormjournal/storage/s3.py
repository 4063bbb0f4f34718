"""The S3 store: write-once objects in a bucket, each under an explicit Object Lock.

Object ``n`` lives at key ``<prefix>/n`` (or ``n`` with no prefix) of
``s3://bucket/prefix``. It works against AWS S3, MinIO, Ceph RGW or moto by
endpoint URL (``AWS_ENDPOINT_URL`` is honoured by boto3).

Write-once, as tessera does it: every put is conditional (``If-None-Match: *``)
and carries a SHA-256 checksum; when the object exists, it is read back and only
identical bytes are accepted. That makes a put safe to repeat after an unknown
outcome (a reset after the server stored the object), so on top of botocore's
retries a failed put is retried whole, with backoff.

With a retention policy, every put carries an explicit ``ObjectLockMode`` and
``ObjectLockRetainUntilDate``, never relying on the bucket default. The store
only ever sets a retention when it creates an object: it has no operation that
deletes an object, shortens a retention or bypasses a governance lock.

The one exception to write-once is a writer's lease (``.leases/stream=<s>.json``,
FORMAT.md 11b): a small working object, replaced only by a conditional put
(``If-Match`` its ETag, or ``If-None-Match: *``), never with a retention, and
hidden from listings like every dot-name.
"""

from __future__ import annotations

import base64
import builtins
import copy
import dataclasses
import datetime as dt
import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions as bx
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ConfigError, ConflictError, JournalError, NotFoundError, StorageError, ValidationError
from . import layout
from .base import ObjectInfo, PutResult
from .names import check_name, is_safe_name, is_safe_prefix
from .objectlock import NO_LOCK_HINT, LockPolicy, ObjectLockState, check_extension

log = logging.getLogger(__name__)

T = TypeVar("T")

MIN_PART_SIZE = 5 << 20  # S3's minimum for every part but the last
MAX_PARTS = 10_000
LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
MAX_POOL_CONNECTIONS = 32  # the lock audit and legal holds send up to --workers requests at once

_PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}
_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}
_THROTTLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
}
_ACCESS_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
}
# Failures after which the request may or may not have been applied; repeating a
# conditional put or a read is safe.
_TRANSIENT_EXCEPTIONS = (
    bx.ConnectionError,
    bx.HTTPClientError,
    bx.IncompleteReadError,
    bx.ChecksumError,
    bx.FlexibleChecksumError,
)

NO_BUCKET_HINT = (
    "check the bucket name and the endpoint (--endpoint-url or AWS_ENDPOINT_URL); create the bucket "
    "with Object Lock enabled: aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket"
)
ACCESS_HINT = (
    "check the credentials (the standard AWS chain: env, profile, role); writers need s3:PutObject, "
    "s3:GetObject and s3:ListBucket, readers s3:GetObject and s3:ListBucket (without s3:ListBucket a "
    "missing object is reported as access denied); the lock audit also s3:ListBucketVersions, "
    "s3:GetObjectRetention and s3:GetObjectLegalHold; holds and extension s3:PutObjectLegalHold and "
    "s3:PutObjectRetention"
)


def _utc(value: Any) -> dt.datetime | None:
    return value.astimezone(dt.UTC) if isinstance(value, dt.datetime) else None


def _newest_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The listing gives each key's versions newest first; delete markers come in their own list.
    return sorted(entries, key=lambda v: (not v.get("IsLatest"), -v["LastModified"].timestamp()))


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; raises ConfigError."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"not an S3 store URL: {url!r} (expected s3://bucket/prefix)")
    if not _BUCKET_NAME.fullmatch(parts.netloc):
        raise ConfigError(f"{parts.netloc!r} is not a bucket name (letters, digits, '.', '-', '_'; 3 to 255)")
    return parts.netloc, parts.path.strip("/")


# What any S3 client accepts as a bucket name (AWS's rules are stricter; MinIO's and older buckets' looser).
_BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{3,255}")


def sha256_b64(data: bytes | memoryview) -> str:
    """The base64 SHA-256 digest S3 expects in ``x-amz-checksum-sha256``."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _code(e: ClientError) -> tuple[str, int]:
    error = e.response.get("Error", {})
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return str(error.get("Code", "")), int(status)


def _is_precondition(e: BaseException) -> bool:
    return isinstance(e, ClientError) and (_code(e)[0] in _PRECONDITION_CODES or _code(e)[1] in (409, 412))


def _is_not_found(e: BaseException) -> bool:
    return isinstance(e, ClientError) and (_code(e)[0] in _NOT_FOUND_CODES or _code(e) == ("", 404))


def _is_transient(e: BaseException) -> bool:
    if isinstance(e, _Retry):
        return True
    if isinstance(e, ClientError):
        code, status = _code(e)
        return status >= 500 or status == 429 or code in _THROTTLE_CODES
    return isinstance(e, _TRANSIENT_EXCEPTIONS)


def _describe(e: BaseException) -> str:
    if isinstance(e, ClientError):
        code, status = _code(e)
        message = e.response.get("Error", {}).get("Message", "")
        return f"{code or status}: {message}" if message else f"{code or status}"
    return str(e) or type(e).__name__


class _Retry(Exception):
    """An attempt that should be repeated: a conditional write raced one not yet visible."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(_describe(cause))
        self.cause = cause


class S3Store:
    """A Store on ``s3://bucket/prefix`` (boto3), write-once and Object-Locked.

    ``retention`` is any object with ``mode``, ``days`` and ``retain_until(now)``
    (:class:`wormjournal.retention.RetentionPolicy`); without one, objects are
    written with no lock (development buckets). Objects larger than
    ``multipart_threshold`` bytes go up in ``part_size`` parts. A put, and each
    read, is tried ``put_attempts`` times on transient failures, each try with
    botocore's own retries underneath.

    Raises ConfigError on bad arguments.
    """

    backoff_base = 0.2  # seconds; doubled each attempt, with jitter
    backoff_cap = 5.0

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        retention: LockPolicy | None = None,
        multipart_threshold: int = 64 << 20,
        part_size: int = 16 << 20,
        put_attempts: int = 4,
    ) -> None:
        prefix = prefix.strip("/")
        if not bucket or "/" in bucket:
            raise ConfigError(f"bad S3 bucket name {bucket!r}")
        if prefix and not is_safe_name(prefix):
            raise ConfigError(f"unsafe S3 prefix {prefix!r}", hint="give a prefix like 'archive/prod'")
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum), not {part_size}")
        if multipart_threshold < 0:
            raise ConfigError(f"multipart_threshold must be >= 0, not {multipart_threshold}")
        if put_attempts < 1:
            raise ConfigError(f"put_attempts must be >= 1, not {put_attempts}")
        if retention is not None and retention.mode not in LOCK_MODES:
            raise ConfigError(f"Object Lock mode must be COMPLIANCE or GOVERNANCE, not {retention.mode!r}")
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.retention = retention
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.put_attempts = put_attempts
        self._root = f"{prefix}/" if prefix else ""
        self._own_client = client is None  # another process can make the same client (spec)
        if client is None:
            try:
                client = boto3.client(
                    "s3",
                    endpoint_url=endpoint_url,
                    config=botocore.config.Config(
                        retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=30,
                        max_pool_connections=MAX_POOL_CONNECTIONS,
                    ),
                )
            except (BotoCoreError, ValueError) as e:
                raise ConfigError(f"cannot create an S3 client for {self.url}: {e}") from e
        self.client = client

    def with_retention(self, policy: LockPolicy | None) -> S3Store:
        """The same store (bucket, prefix, client, settings), writing every object with ``policy``."""
        clone = copy.copy(self)
        clone.retention = policy
        return clone

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Store:
        """An S3Store for ``s3://bucket/prefix``; keyword arguments as for the constructor."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **kwargs)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def spec(self) -> dict[str, Any] | None:
        """How another process opens this store (:func:`wormjournal.storage.open_store_spec`), its client made
        from the same endpoint and the environment's credentials; None for a store given its own client. The
        retention is not part of it: a writer's processes take it from journal.json."""
        if not self._own_client:
            return None
        return {"kind": "s3", "bucket": self.bucket, "prefix": self.prefix,
                "endpoint_url": self.client.meta.endpoint_url, "multipart_threshold": self.multipart_threshold,
                "part_size": self.part_size, "put_attempts": self.put_attempts}

    def _key(self, name: str) -> str:
        return self._root + check_name(name)

    # -- writing ---------------------------------------------------------------

    def put(self, name: str, data: bytes) -> PutResult:
        """Store ``data`` under ``name`` unless it is there already (then it must be identical).

        Raises ConflictError when different bytes are stored, StorageError when
        the put still fails after ``put_attempts`` tries (it may then be repeated).
        """
        key = self._key(name)
        data = bytes(data)
        if len(data) > self.multipart_threshold:
            return self._retrying("write", name, lambda: self._put_multipart(name, key, data))
        return self._retrying("write", name, lambda: self._put_single(name, key, data))

    def _lock_params(self) -> dict[str, Any]:
        if self.retention is None:
            return {}
        return {
            "ObjectLockMode": self.retention.mode,
            "ObjectLockRetainUntilDate": self.retention.retain_until(dt.datetime.now(dt.UTC)),
        }

    def _put_single(self, name: str, key: str, data: bytes) -> PutResult:
        try:
            resp = self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=sha256_b64(data),
                **self._lock_params(),
            )
        except ClientError as e:
            if _is_precondition(e):
                return self._existing(name, key, data, e)
            raise
        return PutResult(name=name, size=len(data), created=True, version_id=resp.get("VersionId"))

    def _put_multipart(self, name: str, key: str, data: bytes) -> PutResult:
        # Parts grow beyond part_size only when 10,000 parts would not hold the object.
        part_size = max(self.part_size, -(-len(data) // MAX_PARTS))
        upload = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256", **self._lock_params()
        )
        upload_id = upload["UploadId"]
        try:
            parts = []
            view = memoryview(data)
            for number, start in enumerate(range(0, len(data), part_size), start=1):
                chunk = bytes(view[start : start + part_size])
                checksum = sha256_b64(chunk)
                resp = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=checksum,
                )
                parts.append({"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": checksum})
            done = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except ClientError as e:
            self._abort(key, upload_id)
            if _is_precondition(e):
                return self._existing(name, key, data, e)
            raise
        except BaseException:
            self._abort(key, upload_id)
            raise
        return PutResult(name=name, size=len(data), created=True, version_id=done.get("VersionId"))

    def _abort(self, key: str, upload_id: str) -> None:
        # Aborting drops the uploaded parts of an unfinished upload, never a stored object.
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as e:
            log.warning(
                "could not abort multipart upload %s of s3://%s/%s (%s); "
                "an AbortIncompleteMultipartUpload lifecycle rule removes its parts",
                upload_id,
                self.bucket,
                key,
                _describe(e),
            )

    def _existing(self, name: str, key: str, data: bytes, cause: ClientError) -> PutResult:
        """The outcome of a put that found ``name`` taken: identical bytes or a conflict."""
        try:
            stored, resp = self._get_object(key)
        except ClientError as e:
            if _is_not_found(e):
                # A 409 (a concurrent conditional write still in flight) or a write that then failed.
                raise _Retry(cause) from e
            raise
        if stored != data:
            raise ConflictError(
                f"{name} already exists in {self.url} with different bytes "
                f"({len(stored)} stored, {len(data)} offered)"
            )
        return PutResult(name=name, size=len(data), created=False, version_id=resp.get("VersionId"))

    # -- reading ---------------------------------------------------------------

    def _get_object(self, key: str, **extra: Any) -> tuple[bytes, dict[str, Any]]:
        resp = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
        body = resp["Body"]
        try:
            return body.read(), resp
        finally:
            body.close()

    def get(self, name: str) -> bytes:
        """The whole object (its SHA-256 is checked when S3 returns one). Raises NotFoundError, StorageError."""
        key = self._key(name)
        return self._retrying("read", name, lambda: self._get_object(key, ChecksumMode="ENABLED")[0])

    def get_range(self, name: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start``, fewer at the end. Raises ValidationError, NotFoundError, StorageError."""
        key = self._key(name)
        if start < 0:
            raise ValidationError("start", f"must be >= 0, not {start}")
        if length < 0:
            raise ValidationError("length", f"must be >= 0, not {length}")
        if length == 0:
            if self.head(name) is None:
                raise NotFoundError(f"{name} not found in {self.url}")
            return b""

        def read() -> bytes:
            try:
                data, resp = self._get_object(key, Range=f"bytes={start}-{start + length - 1}")
            except ClientError as e:
                if _code(e)[0] == "InvalidRange" or _code(e)[1] == 416:
                    return b""  # the object exists and ends at or before start
                raise
            # A server that ignores Range sends the whole object (200, no Content-Range).
            return data if resp.get("ContentRange") else data[start : start + length]

        return self._retrying("read", name, read)

    def get_tail(self, name: str, length: int) -> tuple[bytes, int]:
        """The last ``length`` bytes of an object (all of it when shorter) and its size, in one request (a suffix
        range: the size is in its Content-Range). Raises ValidationError, NotFoundError, StorageError."""
        key = self._key(name)
        if length <= 0:
            if length < 0:
                raise ValidationError("length", f"must be >= 0, not {length}")
            info = self.head(name)
            if info is None:
                raise NotFoundError(f"{name} not found in {self.url}")
            return b"", info.size

        def read() -> tuple[bytes, int]:
            try:
                data, resp = self._get_object(key, Range=f"bytes=-{length}")
            except ClientError as e:
                if _code(e)[0] == "InvalidRange" or _code(e)[1] == 416:
                    return b"", 0  # an empty object
                raise
            content_range = resp.get("ContentRange")
            if not content_range:  # a server that ignores Range sends the whole object
                return data[-length:], len(data)
            total = content_range.rpartition("/")[2]
            if not total.isdigit():
                raise StorageError(f"cannot read {name} in {self.url}: Content-Range {content_range!r} has no size")
            return data, int(total)

        return self._retrying("read", name, read)

    # Over HTTP each request is a round trip: byte ranges this close are fetched as one (segments.pages).
    range_gap = 256 << 10
    _READERS = 16  # ranged GETs of one object in flight at once

    def get_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Several ranges of one object, requested concurrently. Raises as get_range does."""
        if len(ranges) < 2:
            return [self.get_range(name, start, length) for start, length in ranges]
        pool = self.__dict__.get("_range_pool")
        if pool is None:
            pool = self.__dict__.setdefault("_range_pool", ThreadPoolExecutor(self._READERS,
                                                                               thread_name_prefix="wormjournal-s3"))
        return list(pool.map(lambda r: self.get_range(name, r[0], r[1]), ranges))

    def head(self, name: str) -> ObjectInfo | None:
        """Size and version id of ``name``, or None when absent. Raises StorageError."""
        resp = self._head(name)
        if resp is None:
            return None
        return ObjectInfo(name=name, size=int(resp["ContentLength"]), version_id=resp.get("VersionId"))

    def _head(self, name: str, key: str | None = None) -> dict[str, Any] | None:
        key = key or self._key(name)

        def call() -> dict[str, Any] | None:
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)  # type: ignore[no-any-return]
            except ClientError as e:
                if _is_not_found(e):
                    return None
                raise

        return self._retrying("read", name, call)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, in name order (S3 lists keys in UTF-8 byte order).

        Keys that are not safe object names (``a//b``, folder markers, dot-files) are skipped.
        Raises NotFoundError when the bucket does not exist, StorageError.
        """
        if not is_safe_prefix(prefix):
            return
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._root + prefix}
        while True:
            page = self._retrying("list", prefix or None, lambda: self.client.list_objects_v2(**request))
            for obj in page.get("Contents", ()):
                name = obj["Key"][len(self._root) :]
                if is_safe_name(name):
                    yield ObjectInfo(name=name, size=int(obj["Size"]))
            if not page.get("IsTruncated"):
                return
            request["ContinuationToken"] = page["NextContinuationToken"]

    # -- writer leases (FORMAT.md 11b) ---------------------------------------------

    def _lease_key(self, name: str) -> str:
        if layout.parse_lease(name) is None:
            raise ValidationError("name", f"{name!r} is not a lease object name")
        return self._root + name

    def read_lease(self, name: str) -> tuple[bytes, str] | None:
        """The lease's bytes and ETag, or None when there is none. Raises StorageError."""
        key = self._lease_key(name)

        def call() -> tuple[bytes, str] | None:
            try:
                data, resp = self._get_object(key)
            except ClientError as e:
                if _is_not_found(e):
                    return None
                raise
            return data, str(resp["ETag"])

        return self._retrying("read", name, call)

    def lease_etag(self, name: str) -> str | None:
        """The lease's current ETag (one HEAD), or None when there is none. Raises StorageError."""
        resp = self._head(name, self._lease_key(name))
        return None if resp is None else str(resp["ETag"])

    def swap_lease(self, name: str, data: bytes, expect: str | None) -> str | None:
        """Write ``data`` if the lease's ETag is still ``expect`` (None: if there is no lease).

        A conditional put with ``If-Match`` (or ``If-None-Match: *``) and no Object Lock
        retention: a lease is a working object, replaced at each open and close. Returns
        the new ETag, or None when another write came first. Safe to repeat after an
        unknown outcome: a refused put whose bytes are there after all was ours.
        """
        key = self._lease_key(name)
        data = bytes(data)
        condition = {"IfMatch": expect} if expect is not None else {"IfNoneMatch": "*"}

        def call() -> str | None:
            try:
                resp = self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=sha256_b64(data),
                    **condition,
                )
            except ClientError as e:
                if _code(e)[1] == 409:
                    raise _Retry(e) from e  # a conflicting conditional write in flight: ask again
                if not (_is_precondition(e) or (expect is not None and _is_not_found(e))):
                    raise
                current = self.read_lease(name)
                return current[1] if current is not None and current[0] == data else None
            return str(resp["ETag"])

        return self._retrying("write", name, call)

    # -- Object Lock -----------------------------------------------------------

    def object_lock_enabled(self) -> bool:
        """True when the bucket has Object Lock enabled. Raises NotFoundError, StorageError."""

        def call() -> bool:
            try:
                resp = self.client.get_object_lock_configuration(Bucket=self.bucket)
            except ClientError as e:
                if _code(e)[0] == "ObjectLockConfigurationNotFoundError":
                    return False
                raise
            return bool(resp.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")

        return self._retrying("read the Object Lock configuration of", None, call)

    def head_lock(self, name: str) -> dict[str, Any]:
        """The lock of ``name``: ``mode``, ``retain_until`` (datetime), ``legal_hold``, ``version_id``.

        Each is None when unset (or when the caller lacks s3:GetObjectRetention /
        s3:GetObjectLegalHold, which makes S3 leave them out). Raises NotFoundError.
        """
        resp = self._head(name)
        if resp is None:
            raise NotFoundError(f"{name} not found in {self.url}")
        return {
            "mode": resp.get("ObjectLockMode"),
            "retain_until": resp.get("ObjectLockRetainUntilDate"),
            "legal_hold": resp.get("ObjectLockLegalHoldStatus"),
            "version_id": resp.get("VersionId"),
        }

    def lock_state(self, name: str, version_id: str | None = None) -> ObjectLockState | None:
        """The lock of ``name`` (its current version, or ``version_id``), or None when absent."""
        key = self._key(name)
        extra = {"VersionId": version_id} if version_id else {}

        def call() -> dict[str, Any] | None:
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key, **extra)  # type: ignore[no-any-return]
            except ClientError as e:
                if _is_not_found(e) or _code(e)[1] == 405:  # 405: the version is a delete marker
                    return None
                raise

        resp = self._retrying("read the lock of", name, call)
        if resp is None:
            return None
        return ObjectLockState(
            name=name, version_id=resp.get("VersionId"), size=int(resp.get("ContentLength", 0)),
            last_modified=_utc(resp.get("LastModified")), mode=resp.get("ObjectLockMode"),
            retain_until=_utc(resp.get("ObjectLockRetainUntilDate")),
            legal_hold=resp.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def versions(self, prefix: str = "") -> Iterator[tuple[str, builtins.list[dict[str, Any]]]]:
        """(name, its versions and delete markers, newest first) for every key under ``prefix``.

        One page of the version listing at a time: memory stays bounded by a page.
        """
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._root + prefix}
        name: str | None = None
        entries: list[dict[str, Any]] = []
        while True:
            page = self._retrying("list the versions of", prefix or None,
                                  lambda: self.client.list_object_versions(**request))
            found = [dict(v, DeleteMarker=False) for v in page.get("Versions", ())]
            found += [dict(v, DeleteMarker=True) for v in page.get("DeleteMarkers", ())]
            found.sort(key=lambda v: v["Key"])  # stable: each key's entries keep their newest-first order
            for v in found:
                key_name = v["Key"][len(self._root) :]
                if key_name != name:
                    if name is not None and is_safe_name(name):
                        yield name, _newest_first(entries)
                    name, entries = key_name, []
                entries.append(v)
            if not page.get("IsTruncated"):
                break
            request["KeyMarker"] = page.get("NextKeyMarker")
            request["VersionIdMarker"] = page.get("NextVersionIdMarker")
        if name is not None and is_safe_name(name):
            yield name, _newest_first(entries)

    def set_legal_hold(self, name: str, on: bool) -> None:
        """Put (``on``) or lift a legal hold on the current version of ``name``."""
        key = self._key(name)
        status = "ON" if on else "OFF"
        self._retrying("set the legal hold of", name, lambda: self.client.put_object_legal_hold(
            Bucket=self.bucket, Key=key, LegalHold={"Status": status}))

    def extend_retention(self, name: str, until: dt.datetime, mode: str | None = None,
                         current: ObjectLockState | None = None) -> ObjectLockState:
        """Lengthen the retention of ``name``'s current version to ``until`` (keeping or raising its mode).

        Refused with RetentionError, before any request that changes anything, when
        ``until`` is earlier than the present retain-until date or ``mode`` would turn
        COMPLIANCE into GOVERNANCE (S3 refuses both; not every S3-compatible store does).
        ``current`` is the lock state just read, saving a HEAD. Returns the state it set.
        """
        state = current or self.lock_state(name)
        if state is None:
            raise NotFoundError(f"{name} not found in {self.url}")
        check_extension(state, until, mode)
        new_mode = mode or state.mode or (self.retention.mode if self.retention else "COMPLIANCE")
        until = until.astimezone(dt.UTC)
        key = self._key(name)
        extra = {"VersionId": state.version_id} if state.version_id else {}
        self._retrying("extend the retention of", name, lambda: self.client.put_object_retention(
            Bucket=self.bucket, Key=key, Retention={"Mode": new_mode, "RetainUntilDate": until}, **extra))
        return dataclasses.replace(state, mode=new_mode, retain_until=until)

    # -- retries and errors ----------------------------------------------------

    def _retrying(self, action: str, name: str | None, fn: Callable[[], T]) -> T:
        """``fn()``, repeated with backoff on transient failures; errors mapped to StorageError."""
        for attempt in range(1, self.put_attempts + 1):
            try:
                return fn()
            except JournalError:
                raise
            except (ClientError, BotoCoreError, _Retry) as e:
                if not _is_transient(e):
                    raise self._error(e, action, name) from e
                if attempt == self.put_attempts:
                    cause = e.cause if isinstance(e, _Retry) else e
                    raise StorageError(
                        f"cannot {action} {self._where(name)} after {attempt} attempts: {_describe(cause)}"
                    ) from cause
                delay = self._backoff(attempt)
                log.warning(
                    "%s %s failed (attempt %d of %d): %s; retrying in %.2fs",
                    action,
                    self._where(name),
                    attempt,
                    self.put_attempts,
                    _describe(e),
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _where(self, name: str | None) -> str:
        return f"{name} in {self.url}" if name else self.url

    def _error(self, e: BaseException, action: str, name: str | None) -> StorageError:
        where = self._where(name)
        if isinstance(e, ClientError):
            code, status = _code(e)
            if code == "NoSuchBucket":
                return NotFoundError(f"bucket {self.bucket!r} does not exist ({action} {where})", hint=NO_BUCKET_HINT)
            if _is_not_found(e):
                return NotFoundError(f"{name} not found in {self.url}")
            if code in _ACCESS_CODES or status == 403:
                return StorageError(f"access denied: cannot {action} {where} ({_describe(e)})", hint=ACCESS_HINT)
            if code == "InvalidRequest" and "ObjectLock" in _describe(e):
                return StorageError(f"cannot {action} {where}: {_describe(e)}", hint=NO_LOCK_HINT)
        if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
            return StorageError(f"cannot {action} {where}: {e}", hint=ACCESS_HINT)
        return StorageError(f"cannot {action} {where}: {_describe(e)}")
