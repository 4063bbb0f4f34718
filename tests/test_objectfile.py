"""ObjectFile: pyarrow reads a Parquet object through ranged gets, touching only what it needs."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wormjournal.errors import NotFoundError
from wormjournal.storage.local import LocalStore
from wormjournal.storage.objectfile import ObjectFile


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_reads_seeks_and_ends_like_a_file(store: LocalStore) -> None:
    data = os.urandom(10_000)
    store.put("a/blob", data)
    f = ObjectFile(store, "a/blob")
    assert f.size == len(data)
    assert f.read(10) == data[:10]
    f.seek(-5, os.SEEK_END)
    assert f.read() == data[-5:]
    assert f.read(3) == b""
    f.seek(100)
    f.seek(50, os.SEEK_CUR)
    assert f.tell() == 150
    assert f.read(50) == data[150:200]


def test_missing_object_is_not_found(store: LocalStore) -> None:
    with pytest.raises(NotFoundError):
        ObjectFile(store, "nope")


def test_parquet_column_read_touches_a_fraction_of_the_object(store: LocalStore) -> None:
    n = 20_000
    table = pa.table({"small": list(range(n)), "big": [os.urandom(200) for _ in range(n)]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=5_000)
    data = sink.getvalue().to_pybytes()
    store.put("seg.parquet", data)
    f = ObjectFile(store, "seg.parquet")
    got = pq.ParquetFile(f).read(columns=["small"])
    assert got.column("small").to_pylist() == list(range(n))
    assert f.bytes_read < len(data) / 10
