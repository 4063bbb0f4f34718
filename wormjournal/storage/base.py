"""The Store interface: where sealed bytes live.

Five operations and no delete (DESIGN.md, invariant 3). ``put`` is write-once:
putting identical bytes again is a no-op, different bytes raise ConflictError.
The read half, :class:`ObjectReader`, is all the auditor ever gets. A store that
is not a local directory also keeps writer leases (:class:`LeaseStore`), the only
objects it ever replaces: working objects, never part of the journal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from ..errors import NotFoundError


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    version_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PutResult:
    name: str
    size: int
    created: bool  # False when identical bytes were already there
    version_id: str | None = None


@runtime_checkable
class ObjectReader(Protocol):
    """Read-only access to a store: what the verifier depends on."""

    def get(self, name: str) -> bytes:
        """The whole object. Raises StorageError (``NotFound`` when absent)."""

    def get_range(self, name: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` (fewer at the end of the object)."""

    def head(self, name: str) -> ObjectInfo | None:
        """Size (and version) of an object, or None when absent."""

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix``, in name order."""


def get_ranges(store: ObjectReader, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """The bytes of several ranges (start, length) of one object: at once where the store can (a local
    directory opens the file once, S3 sends the requests concurrently), else one ``get_range`` each."""
    many = getattr(store, "get_ranges", None)
    if many is not None:
        return many(name, ranges)  # type: ignore[no-any-return]
    return [store.get_range(name, start, length) for start, length in ranges]


def get_tail(store: ObjectReader, name: str, length: int) -> tuple[bytes, int]:
    """The last ``length`` bytes of an object (all of it when shorter) and its size: one request where the store
    can (a suffix range), else a HEAD and a ranged GET. Raises NotFoundError."""
    tail = getattr(store, "get_tail", None)
    if tail is not None:
        return tail(name, length)  # type: ignore[no-any-return]
    return tail_by_head(store, name, length)


def tail_by_head(store: ObjectReader, name: str, length: int) -> tuple[bytes, int]:
    """:func:`get_tail` in two requests, for a store without a suffix range."""
    info = store.head(name)
    if info is None:
        raise NotFoundError(f"{name} not found in {getattr(store, 'url', store)}")
    start = max(0, info.size - length)
    return store.get_range(name, start, info.size - start), info.size


@runtime_checkable
class Store(ObjectReader, Protocol):
    """A write-once object store."""

    url: str

    def put(self, name: str, data: bytes) -> PutResult:
        """Store ``data`` under ``name`` if absent; identical bytes are a no-op.

        Raises ConflictError when different bytes are already stored, StorageError
        on I/O failure.
        """


@runtime_checkable
class LockingStore(Store, Protocol):
    """A store that can lock objects (S3 Object Lock)."""

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock enabled."""

    def with_retention(self, policy: Any) -> LockingStore:
        """The same store, writing every object with ``policy`` (a RetentionPolicy, or None)."""


@runtime_checkable
class LeaseStore(Protocol):
    """A store that keeps writer leases (S3): small working objects beside the journal, never locked,
    listed or verified, replaced only by compare-and-swap on their ETag (FORMAT.md 11b)."""

    url: str

    def read_lease(self, name: str) -> tuple[bytes, str] | None:
        """The lease's bytes and ETag, or None when there is none. Raises StorageError."""

    def lease_etag(self, name: str) -> str | None:
        """The lease's current ETag (one HEAD), or None when there is none. Raises StorageError."""

    def swap_lease(self, name: str, data: bytes, expect: str | None) -> str | None:
        """Write ``data`` if the lease's ETag is still ``expect`` (None: if there is no lease).

        Returns the new ETag, or None when another write came first. Raises StorageError.
        """
