"""The contract every Store backend keeps (wormjournal/storage/base.py).

Bind it to a backend by subclassing with a ``store`` fixture that yields an
empty, existing store::

    class TestLocalStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            return LocalStore(tmp_path)

The tests use only the Store interface, so the same class runs against the
local directory, S3 (moto's server) or an in-memory backend.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from wormjournal.errors import ConflictError, NotFoundError, StorageError, ValidationError
from wormjournal.storage.base import ObjectInfo, ObjectReader, PutResult, Store, get_tail

UNSAFE_NAMES = [
    "",
    "..",
    ".",
    "../escape",
    "a/../b",
    "a/./b",
    "/abs",
    "/",
    "a//b",
    "a/",
    ".hidden",
    "a/.hidden",
    "a/b/.tmp-123",
    "nul\x00byte",
]


def _names(store: Store, prefix: str) -> list[str]:
    return [o.name for o in store.list(prefix)]


def _race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` for i in range(n) on n threads released together; return results or exceptions."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        try:
            return fn(i)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            return e

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


class StoreContract:
    """Behaviour tests for any Store; subclasses provide the ``store`` fixture."""

    # -- shape ---------------------------------------------------------------

    def test_is_a_store_and_a_reader(self, store: Store) -> None:
        assert isinstance(store, Store)
        assert isinstance(store, ObjectReader)
        assert isinstance(store.url, str) and store.url
        assert not hasattr(store, "delete"), "the Store has no delete (invariant 3)"

    def test_new_store_is_empty(self, store: Store) -> None:
        assert _names(store, "") == []

    # -- put / get -----------------------------------------------------------

    def test_put_then_get(self, store: Store) -> None:
        result = store.put("segments/a.bin", b"hello world")
        assert result == PutResult(name="segments/a.bin", size=11, created=True, version_id=result.version_id)
        assert store.get("segments/a.bin") == b"hello world"
        info = store.head("segments/a.bin")
        assert info is not None
        assert (info.name, info.size) == ("segments/a.bin", 11)

    def test_put_at_top_level(self, store: Store) -> None:
        assert store.put("journal.json", b"{}").created
        assert store.get("journal.json") == b"{}"
        assert _names(store, "") == ["journal.json"]

    def test_put_identical_bytes_again_is_a_no_op(self, store: Store) -> None:
        data = b"sealed segment bytes"
        first = store.put("x/obj", data)
        second = store.put("x/obj", data)
        assert first.created is True
        assert second.created is False
        assert (second.name, second.size) == ("x/obj", len(data))
        assert store.get("x/obj") == data
        assert _names(store, "") == ["x/obj"]
        info = store.head("x/obj")
        assert info is not None and info.size == len(data)

    @pytest.mark.parametrize(
        "other",
        [b"sealed segment bytez", b"sealed segment bytes!", b"sealed", b""],
        ids=["same-length", "longer", "shorter", "empty"],
    )
    def test_put_different_bytes_conflicts_and_keeps_the_original(self, store: Store, other: bytes) -> None:
        data = b"sealed segment bytes"
        store.put("x/obj", data)
        with pytest.raises(ConflictError) as exc:
            store.put("x/obj", other)
        assert "x/obj" in str(exc.value)
        assert isinstance(exc.value, StorageError)
        assert store.get("x/obj") == data
        info = store.head("x/obj")
        assert info is not None and info.size == len(data)
        assert _names(store, "") == ["x/obj"]
        # And the original can still be re-put idempotently afterwards.
        assert store.put("x/obj", data).created is False

    def test_put_bytes_onto_an_empty_object_conflicts(self, store: Store) -> None:
        store.put("e", b"")
        with pytest.raises(ConflictError):
            store.put("e", b"\x00")
        assert store.get("e") == b""

    def test_empty_object(self, store: Store) -> None:
        result = store.put("empty/obj", b"")
        assert result.created and result.size == 0
        assert store.get("empty/obj") == b""
        assert store.get_range("empty/obj", 0, 10) == b""
        info = store.head("empty/obj")
        assert info is not None and info.size == 0
        assert [(o.name, o.size) for o in store.list("empty/")] == [("empty/obj", 0)]
        assert store.put("empty/obj", b"").created is False

    def test_large_object(self, store: Store) -> None:
        data = os.urandom(3 * 1024 * 1024 + 17)
        assert store.put("big/blob", data).size == len(data)
        assert store.get("big/blob") == data
        info = store.head("big/blob")
        assert info is not None and info.size == len(data)
        mid = 2 * 1024 * 1024 + 5
        assert store.get_range("big/blob", mid, 4096) == data[mid : mid + 4096]
        assert store.get_range("big/blob", len(data) - 10, 100) == data[-10:]
        assert store.put("big/blob", data).created is False
        changed = bytearray(data)
        changed[mid] ^= 1
        with pytest.raises(ConflictError):
            store.put("big/blob", bytes(changed))
        assert store.get("big/blob") == data

    def test_binary_bytes_survive(self, store: Store) -> None:
        data = bytes(range(256)) * 4
        store.put("bin", data)
        assert store.get("bin") == data

    # -- missing objects -----------------------------------------------------

    def test_get_missing_raises_not_found(self, store: Store) -> None:
        with pytest.raises(NotFoundError) as exc:
            store.get("nope/missing")
        assert "nope/missing" in str(exc.value)

    def test_get_range_missing_raises_not_found(self, store: Store) -> None:
        with pytest.raises(NotFoundError):
            store.get_range("nope/missing", 0, 10)

    def test_head_missing_is_none(self, store: Store) -> None:
        assert store.head("nope/missing") is None
        store.put("present", b"1")
        assert store.head("Present") is None
        assert store.head("presen") is None

    def test_a_prefix_of_objects_is_not_an_object(self, store: Store) -> None:
        store.put("dir/sub/obj", b"data")
        for name in ("dir", "dir/sub"):
            assert store.head(name) is None, name
            with pytest.raises(NotFoundError):
                store.get(name)
            with pytest.raises(NotFoundError):
                store.get_range(name, 0, 1)

    def test_a_name_below_an_object_is_absent(self, store: Store) -> None:
        store.put("leaf", b"data")
        assert store.head("leaf/child") is None
        with pytest.raises(NotFoundError):
            store.get("leaf/child")
        with pytest.raises(NotFoundError):
            store.get_range("leaf/child", 0, 1)

    # -- get_range -----------------------------------------------------------

    @pytest.mark.parametrize(
        ("start", "length", "expected"),
        [
            (0, 4, b"0123"),  # at the start
            (0, 36, b"0123456789abcdefghijklmnopqrstuvwxyz"),  # the whole object
            (10, 6, b"abcdef"),  # in the middle
            (35, 1, b"z"),  # the last byte
            (30, 100, b"uvwxyz"),  # runs past the end: fewer bytes
            (36, 5, b""),  # starts at the end
            (1000, 5, b""),  # starts past the end
            (5, 0, b""),  # zero length
        ],
    )
    def test_get_range(self, store: Store, start: int, length: int, expected: bytes) -> None:
        store.put("r", b"0123456789abcdefghijklmnopqrstuvwxyz")
        assert store.get_range("r", start, length) == expected

    @pytest.mark.parametrize(("length", "expected"), [(4, b"wxyz"), (36, None), (100, None), (0, b"")])
    def test_get_tail_is_the_end_and_the_size(self, store: Store, length: int, expected: bytes | None) -> None:
        data = b"0123456789abcdefghijklmnopqrstuvwxyz"
        store.put("r", data)
        assert get_tail(store, "r", length) == (data if expected is None else expected, len(data))
        store.put("empty", b"")
        assert get_tail(store, "empty", 10) == (b"", 0)
        with pytest.raises(NotFoundError):
            get_tail(store, "nope/missing", 10)

    @pytest.mark.parametrize(("start", "length", "field"), [(-1, 4, "start"), (0, -1, "length")])
    def test_get_range_refuses_negative_arguments(
        self, store: Store, start: int, length: int, field: str
    ) -> None:
        store.put("r", b"0123456789")
        with pytest.raises(ValidationError) as exc:
            store.get_range("r", start, length)
        assert exc.value.field == field

    # -- list ----------------------------------------------------------------

    def _fill(self, store: Store) -> dict[str, bytes]:
        objects = {
            "journal.json": b"{}",
            "manifests/stream=a/000000000001.note": b"m1",
            "manifests/stream=a/000000000002.note": b"m22",
            "manifests/stream=b/000000000001.note": b"m333",
            "segments/stream=a/date=2024-01-01/seg-000000000001.parquet": b"s1",
            "segments/stream=a/date=2024-01-02/seg-000000000002.parquet": b"s22",
            "segments/stream=ab/date=2024-01-01/seg-000000000001.parquet": b"s333",
            "a-b": b"1",
            "a/b": b"22",
            "a/c": b"333",
            "ab": b"4444",
        }
        # Put in an order unrelated to name order.
        for name in sorted(objects, key=lambda n: n[::-1]):
            store.put(name, objects[name])
        return objects

    def test_list_everything_in_name_order(self, store: Store) -> None:
        objects = self._fill(store)
        listed = list(store.list(""))
        assert [o.name for o in listed] == sorted(objects)
        assert all(isinstance(o, ObjectInfo) for o in listed)
        assert {o.name: o.size for o in listed} == {n: len(d) for n, d in objects.items()}

    def test_list_orders_by_name_not_by_directory(self, store: Store) -> None:
        self._fill(store)
        # '-' (0x2d) < '/' (0x2f) < 'b' (0x62): a directory walk would get this wrong.
        assert _names(store, "a") == [
            "a-b",
            "a/b",
            "a/c",
            "ab",
        ]

    def test_list_with_a_directory_prefix(self, store: Store) -> None:
        self._fill(store)
        assert _names(store, "manifests/stream=a/") == [
            "manifests/stream=a/000000000001.note",
            "manifests/stream=a/000000000002.note",
        ]
        assert _names(store, "manifests/") == [
            "manifests/stream=a/000000000001.note",
            "manifests/stream=a/000000000002.note",
            "manifests/stream=b/000000000001.note",
        ]
        assert _names(store, "a/") == ["a/b", "a/c"]

    def test_list_nested_prefix_descends(self, store: Store) -> None:
        self._fill(store)
        assert _names(store, "segments/stream=a/") == [
            "segments/stream=a/date=2024-01-01/seg-000000000001.parquet",
            "segments/stream=a/date=2024-01-02/seg-000000000002.parquet",
        ]

    def test_list_with_a_partial_name_prefix(self, store: Store) -> None:
        self._fill(store)
        # 'stream=a' is a prefix of both 'stream=a/' and 'stream=ab/'.
        assert _names(store, "segments/stream=a") == [
            "segments/stream=a/date=2024-01-01/seg-000000000001.parquet",
            "segments/stream=a/date=2024-01-02/seg-000000000002.parquet",
            "segments/stream=ab/date=2024-01-01/seg-000000000001.parquet",
        ]
        assert _names(store, "manifests/stream=a/00000000000") == [
            "manifests/stream=a/000000000001.note",
            "manifests/stream=a/000000000002.note",
        ]
        assert _names(store, "manifests/stream=a/000000000002") == ["manifests/stream=a/000000000002.note"]
        assert _names(store, "jour") == ["journal.json"]

    def test_list_with_a_full_object_name(self, store: Store) -> None:
        self._fill(store)
        assert _names(store, "a/b") == ["a/b"]
        assert _names(store, "journal.json") == ["journal.json"]

    @pytest.mark.parametrize(
        "prefix",
        [
            "missing/",
            "missing",
            "manifests/stream=c/",
            "segments/stream=a/date=2025",
            "journal.jsonx",
            "A",
            "a/b/",
            "../",
            "..",
            "./",
            ".hidden/",
            "manifests/../",
            "/",
        ],
    )
    def test_list_with_a_prefix_that_matches_nothing(self, store: Store, prefix: str) -> None:
        self._fill(store)
        assert _names(store, prefix) == []

    def test_list_of_an_empty_store_is_empty(self, store: Store) -> None:
        assert _names(store, "") == []
        assert _names(store, "segments/") == []

    def test_list_is_restartable(self, store: Store) -> None:
        self._fill(store)
        assert _names(store, "manifests/") == _names(store, "manifests/")

    # -- unsafe names --------------------------------------------------------

    @pytest.mark.parametrize("name", UNSAFE_NAMES)
    def test_unsafe_names_are_refused(self, store: Store, name: str) -> None:
        operations: list[tuple[str, Callable[[], Any]]] = [
            ("put", lambda: store.put(name, b"data")),
            ("get", lambda: store.get(name)),
            ("get_range", lambda: store.get_range(name, 0, 1)),
            ("head", lambda: store.head(name)),
        ]
        for op, call in operations:
            with pytest.raises(StorageError) as exc:
                call()
            assert not isinstance(exc.value, (NotFoundError, ConflictError)), op
        assert _names(store, "") == []

    # -- concurrency ---------------------------------------------------------

    @pytest.mark.parametrize("round_", range(5))
    def test_concurrent_identical_puts_exactly_one_creates(self, store: Store, round_: int) -> None:
        data = os.urandom(64 * 1024)
        name = f"race/same-{round_}"
        results = _race(8, lambda _i: store.put(name, data))
        errors = [r for r in results if isinstance(r, Exception)]
        assert errors == []
        assert sum(r.created for r in results) == 1
        assert all(r.size == len(data) and r.name == name for r in results)
        assert store.get(name) == data
        assert _names(store, "race/") == [name]

    @pytest.mark.parametrize("round_", range(5))
    def test_concurrent_different_puts_exactly_one_wins(self, store: Store, round_: int) -> None:
        payloads = [os.urandom(64 * 1024), os.urandom(64 * 1024)]
        name = f"race/diff-{round_}"
        results = _race(2, lambda i: store.put(name, payloads[i]))
        winners = [i for i, r in enumerate(results) if isinstance(r, PutResult)]
        losers = [i for i, r in enumerate(results) if isinstance(r, ConflictError)]
        assert len(winners) == 1, results
        assert len(losers) == 1, results
        assert results[winners[0]].created is True
        assert store.get(name) == payloads[winners[0]]
