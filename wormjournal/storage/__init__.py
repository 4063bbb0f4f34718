"""Where bytes live: the Store interface and its backends."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from .base import ObjectInfo, ObjectReader, PutResult, Store
from .local import LocalStore
from .objectlock import LockPolicy
from .s3 import S3Store

__all__ = ["LocalStore", "ObjectInfo", "ObjectReader", "PutResult", "Store", "open_store", "open_store_spec",
           "store_spec"]


def open_store(
    location: str | os.PathLike[str] | Store,
    *,
    endpoint_url: str | None = None,
    retention: LockPolicy | None = None,
) -> Store:
    """A Store for a local directory or ``s3://bucket/prefix``.

    ``endpoint_url`` selects an S3-compatible endpoint (MinIO, Ceph RGW, a test
    server); boto3 also honours ``AWS_ENDPOINT_URL``. ``retention`` is the Object
    Lock policy puts are made with (S3 only).
    """
    if not isinstance(location, (str, os.PathLike)):
        return location
    text = os.fspath(location)
    if text.startswith("s3://"):
        return S3Store.from_url(text, endpoint_url=endpoint_url, retention=retention)
    if "://" in text:
        raise ConfigError(f"unsupported store URL {text!r}: give a local directory or s3://bucket/prefix")
    return LocalStore(text)


def store_spec(store: Store) -> dict[str, Any] | None:
    """What another process needs to open ``store`` again (JSON-ready), or None when it cannot."""
    spec = getattr(store, "spec", None)
    return spec() if callable(spec) else None


def open_store_spec(spec: dict[str, Any]) -> Store:
    """The store that :func:`store_spec` described. Raises ConfigError for a spec it does not know."""
    kind = spec.get("kind")
    if kind == "local":
        return LocalStore(spec["root"])
    if kind == "s3":
        return S3Store(spec["bucket"], spec["prefix"], endpoint_url=spec["endpoint_url"],
                       multipart_threshold=spec["multipart_threshold"], part_size=spec["part_size"],
                       put_attempts=spec["put_attempts"])
    raise ConfigError(f"unknown store spec {kind!r}")
