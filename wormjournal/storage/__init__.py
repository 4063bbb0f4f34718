"""Where bytes live: the Store interface and its backends."""

from __future__ import annotations

import os

from ..errors import ConfigError
from .base import ObjectInfo, ObjectReader, PutResult, Store
from .local import LocalStore

__all__ = ["LocalStore", "ObjectInfo", "ObjectReader", "PutResult", "Store", "open_store"]


def open_store(location: str | os.PathLike[str] | Store) -> Store:
    """A Store for a local path (S3 URLs are not supported yet)."""
    if isinstance(location, (str, os.PathLike)):
        text = os.fspath(location)
        if "://" in text:
            raise ConfigError(f"unsupported store URL {text!r}: give a local directory")
        return LocalStore(text)
    return location
