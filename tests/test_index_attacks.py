"""Attacks on index format 3 (runs, fingerprints, format 2 objects) and on the C page decoder.

Each test tries to make a read return wrong data without IntegrityError, crash, or disagree with verify.
A test that fails here is an attack that works; its docstring says what it gets.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wormjournal import IntegrityError, Journal, JournalConfig, Reader
from wormjournal.errors import IndexDamaged
from wormjournal.index import build
from wormjournal.index.catalog import IndexFile, IndexObject
from wormjournal.journal.keys import load_keys
from wormjournal.segments.manifest import Manifest
from wormjournal.segments.notes import split_note
from wormjournal.segments.table import encode_block_roots
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.verify import verify_store

from conftest import ManifestCounter, make_writable, overwrite

CONFIG = JournalConfig(seal_max_age_seconds=None, seal_worker=False, row_group_rows=8, page_rows=4)
SMALL_BLOCKS = {"executions": 2, "threads": 2, "events": 4, "tenants": 2}
KINDS = ("executions", "threads", "events")


@dataclasses.dataclass
class J:
    """A journal written by :func:`write`, and what was appended to it (event id -> (execution, payload))."""

    root: Path
    truth: dict[str, tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    verify_key: Any = None
    store = property(lambda self: self.root / "store")

    def reader(self) -> Reader:
        return Reader(self.store, public_keys=[self.verify_key])

    def copy(self, dest: Path) -> J:
        shutil.copytree(self.root, dest)
        return J(dest, dict(self.truth), self.verify_key)

    def path(self, kind: str, first: int, last: int) -> Path:
        return self.store / layout.index_object("main", kind, first, last)

    def executions(self) -> list[str]:
        return sorted({x for x, _ in self.truth.values()})


def write(j: J, start: int, stop: int, *, create: bool) -> None:
    """Segments start..stop-1: each three executions of three events (two run on for several segments)."""
    opener = Journal.create if create else Journal.open
    with opener(j.store, key_dir=j.root / "keys", config=CONFIG) as journal:
        j.verify_key = journal.verify_key
        for s in range(start, stop):
            batch = []
            for k in range(3):
                x = f"x-{s // 3:03d}-{k}" if k < 2 else f"y-{s:03d}"
                for i in range(3):
                    event_id, payload = f"ev-{s:03d}-{k}-{i}", {"s": s, "k": k, "i": i}
                    j.truth[event_id] = (x, payload)
                    batch.append({"event_type": "step_completed", "execution_id": x, "event_id": event_id,
                                  "thread_id": f"t-{k}", "tenant_id": f"tn-{k % 2}", "payload": payload})
            journal.append_batch(batch)
            journal.seal()


def check_reads(j: J, *, refused: bool = False) -> int:
    """Every read agrees with what was appended: get_event, events, thread_events, executions. With ``refused``,
    a read may raise IntegrityError instead (a damaged object that would mislead it, named): never a wrong answer.
    Returns how many reads were refused."""
    r, refusals = j.reader(), 0

    def read(call: Any, *args: Any) -> Any:
        nonlocal refusals
        try:
            return call(*args)
        except IntegrityError:
            if not refused:
                raise
            refusals += 1
            return ...

    for event_id in j.truth:
        e = read(r.get_event, event_id)
        if e is not ...:
            assert e is not None and e.event_id == event_id, event_id
            assert (e.execution_id, e.payload) == j.truth[event_id], event_id
    for x in j.executions():
        got = read(r.events, x)
        assert got is ... or [e.event_id for e in got] == sorted(i for i, (y, _) in j.truth.items() if y == x), x
    for k in range(3):
        got = read(r.thread_events, f"t-{k}")
        assert got is ... or sorted(e.event_id for e in got) == sorted(i for i in j.truth if i.split("-")[2] == str(k))
    got = read(lambda: r.executions(limit=None))
    assert got is ... or sorted(s.execution_id for s in got) == j.executions()
    for tenant in ("tn-0", "tn-1"):  # through the tenants objects (where every segment has one): the same
        mine = read(lambda t=tenant: r.executions(t, limit=None))
        if got is not ... and mine is not ...:
            assert mine == [s for s in got if s.tenant_id == tenant], tenant
            assert read(lambda t=tenant: r.executions(t, limit=3, offset=2)) in (mine[2:5], ...)
    for missing in ["", "ev-", "ev-000-0-9", "ev-999-0-0", "x" * 5000, "\x00", "év-000-0-0"]:
        assert read(r.get_event, missing) in (None, ...), missing
    return refusals


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> J:
    """Ten segments, index row groups of 2 and 4 rows: runs 0-1, 0-3, 2-3, 4-5, 4-7, 6-7, 0-7, 8-9."""
    j = J(tmp_path_factory.mktemp("attacks") / "j")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build, "BLOCK_ROWS", SMALL_BLOCKS)
        write(j, 0, 10, create=True)
    return j


@pytest.fixture
def j(base: J, tmp_path: Path) -> J:
    return base.copy(tmp_path / "j")


def signed_objects(j: J) -> list[tuple[str, int, int]]:
    r = j.reader()
    return [(root.kind, root.first, root.last) for n in range(r.refresh()) for root in r.manifest(n).index]


# -- fingerprints -------------------------------------------------------------------------------------------------


def test_fingerprint_collisions_never_return_another_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fingerprints cut to 3 values: every fingerprint is shared by dozens of ids across segments and row groups."""
    real_one, real_many = build.fingerprint, build.fingerprints
    monkeypatch.setattr(build, "fingerprint", lambda event_id: real_one(event_id) % 3)
    monkeypatch.setattr(build, "fingerprints", lambda ids: real_many(ids) % 3)
    monkeypatch.setattr(build, "BLOCK_ROWS", SMALL_BLOCKS)
    j = J(tmp_path / "j")
    write(j, 0, 10, create=True)
    check_reads(j)
    assert verify_store(LocalStore(j.store), public_keys=[j.verify_key]).findings == []


def test_unknown_ids_and_every_id_on_the_genuine_store(base: J) -> None:
    check_reads(base)


# -- forged, swapped, missing objects -------------------------------------------------------------------------------


def test_objects_swapped_for_other_ranges_and_kinds(j: J) -> None:
    """Each signed run replaced by the bytes of another signed object (another range of its kind, or its range of
    another kind): metadata or root mismatch, its parts read instead."""
    objects = signed_objects(j)
    originals = {o: j.path(*o).read_bytes() for o in objects}
    rng = random.Random(7)
    for kind, first, last in [o for o in objects if o[1] != o[2]]:
        others = [o for o in objects if o != (kind, first, last) and (o[0] == kind or o[1:] == (first, last))]
        overwrite(j.path(kind, first, last), originals[rng.choice(others)])
    check_reads(j)


def test_all_runs_missing_reads_segments(j: J) -> None:
    for kind, first, last in signed_objects(j):
        if first != last:
            make_writable(j.path(kind, first, last))
            j.path(kind, first, last).unlink()
    check_reads(j)


def reencode(j: J, kind: str, first: int, last: int, edit: Any, block: int | None = None) -> None:
    """The object's rows edited (``edit(rows) -> rows``), encoded as a writer would, with their own new root."""
    table = pq.read_table(j.path(kind, first, last)).replace_schema_metadata(None)
    rows = edit(table.to_pylist())
    block = block or SMALL_BLOCKS[kind]  # the forger's own encoder: the writer's refuses rows out of order
    forged = pa.Table.from_pylist(rows, schema=build.SCHEMAS[kind])
    roots = build.merkle.block_roots(build.leaf_hashes(kind, forged), block)
    meta = {"wormjournal.index": build.INDEX_FORMAT, "wormjournal.journal": j.reader().identity.journal_id,
            "wormjournal.stream": "main", "wormjournal.kind": kind, "wormjournal.first_segment": str(first),
            "wormjournal.last_segment": str(last), build.BLOCK_ROWS_KEY: str(block),
            build.BLOCK_ROOTS_KEY: encode_block_roots(roots)}
    sink = pa.BufferOutputStream()
    pq.write_table(forged.replace_schema_metadata(meta), sink, row_group_size=block, compression="zstd")
    overwrite(j.path(kind, first, last), sink.getvalue().to_pybytes())


@pytest.mark.parametrize("edit", ["drop_input", "duplicate", "swap_groups", "regroup", "other_segment"])
def test_forged_run_rows(j: J, edit: str) -> None:
    """Run 0-7 of each kind re-encoded with rows of one input missing, rows duplicated, two rows swapped across
    a row group boundary, the same rows in row groups of another size, or one row pointing at another segment."""
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if edit == "drop_input":
            return [r for r in rows if not 6 <= r["segment"] <= 7]
        if edit == "duplicate":
            return sorted(rows + rows[3:9], key=lambda r: tuple(r.values()))
        if edit == "swap_groups":  # rows 3 and 4: across a row group boundary for blocks of 2 and of 4
            rows[3], rows[4] = rows[4], rows[3]
            return rows
        if edit == "other_segment":
            rows[5] = {**rows[5], "segment": (rows[5]["segment"] + 1) % 8}
        return rows
    for kind in KINDS:
        reencode(j, kind, 0, 7, change, block=8 if edit == "regroup" else None)
    check_reads(j, refused=True)


def test_a_run_is_not_built_over_an_input_damaged_under_its_genuine_footer(j: J) -> None:
    """Runs 8-9 altered in their last row group, footer (block roots) kept: a new writer process seals 10, 11 and
    merges 8-9 for the run 8-11 a row group at a time; the damage shows mid-merge and the run is left out."""
    for kind in KINDS:
        path = j.path(kind, 8, 9)
        table = pq.read_table(path)
        rows = table.to_pylist()
        rows[-1]["segment" if kind == "threads" else "row"] += 100
        make_writable(path)
        meta = pq.read_metadata(path).metadata  # the genuine footer: its block roots make the signed root
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema).replace_schema_metadata(meta), path,
                       row_group_size=SMALL_BLOCKS[kind])
        with pytest.raises(IndexDamaged, match="row group"):  # opens, with its genuine footer; the rows do not hash
            list(IndexFile(LocalStore(j.store), IndexObject(layout.index_object("main", kind, 8, 9), 8, 9), kind,
                           j.reader().manifest(9).index_root(kind, 8), j.reader().identity.journal_id, "main").rows())
    write(j, 10, 12, create=False)
    assert not j.path("events", 8, 11).exists()
    check_reads(j, refused=True)


def test_invalid_utf8_in_footer_statistics_is_read_around(j: J) -> None:
    """ATTACK: the footer statistics of a signed executions/threads object set to bytes that are not UTF-8 (rows,
    block roots and root untouched). pyarrow's ``Statistics.min`` raises UnicodeDecodeError inside
    ``IndexFile.__init__`` after the root checks, outside its try: not IndexDamaged, so Catalog.lookup does not
    read around the object and events()/executions()/thread_events() raise UnicodeDecodeError."""
    for kind in ("executions", "threads"):
        path = j.path(kind, 0, 7)
        data = path.read_bytes()
        length = struct.unpack("<I", data[-8:-4])[0]
        start = len(data) - 8 - length
        key = pq.read_table(path).column(build.KEY[kind])[0].as_py().encode()
        footer = data[start:-8]
        assert key in footer
        overwrite(path, data[:start] + footer.replace(key, b"\xff" + key[1:]) + data[-8:])
    check_reads(j)


# -- format 2 objects ---------------------------------------------------------------------------------------------


def as_format_2(mp: pytest.MonkeyPatch) -> None:
    """The writer of index format 2: events rows (event_id, segment, row, seq) sorted by event id, no tenants
    objects, runs of 8**L segments only (merging 8 blocks)."""
    segment_tables, schemas, sort_key = build.segment_tables, build.SCHEMAS, build._SORT_KEY
    events_sort = [("event_id", "ascending"), ("segment", "ascending"), ("row", "ascending")]

    def tables(table: pa.Table, segment: int, started: Any = None) -> dict[str, pa.Table]:
        new = build.SCHEMAS, build._SORT_KEY
        build.SCHEMAS, build._SORT_KEY = schemas, sort_key  # the executions and threads tables of format 3
        try:
            out = segment_tables(table, segment, started)
        finally:
            build.SCHEMAS, build._SORT_KEY = new
        del out["tenants"]  # format 2 had no tenants objects
        n = table.num_rows
        events = pa.table({"event_id": table.column("event_id"), "segment": np.full(n, segment, dtype=np.int64),
                           "row": np.arange(n, dtype=np.int64), "seq": table.column("seq")},
                          schema=build.EVENTS_SCHEMA_2)
        out["events"] = events.take(pa.compute.sort_indices(events, sort_keys=events_sort))
        return out

    def ranges(segment: int) -> list[tuple[int, int]]:
        out, s = [(segment, segment)], 8
        while s <= 8**4 and (segment + 1) % s == 0:
            out.append((segment + 1 - s, segment))
            s *= 8
        return out

    def inputs(first: int, last: int) -> list[tuple[int, int]]:
        s = (last - first + 1) // 8
        return [(first + i * s, first + (i + 1) * s - 1) for i in range(8)] if s else []

    mp.setattr(build, "INDEX_FORMAT", "2")
    mp.setattr(build, "SCHEMAS", {**build.SCHEMAS, "events": build.EVENTS_SCHEMA_2})
    mp.setattr(build, "KEY", {**build.KEY, "events": "event_id"})
    mp.setattr(build, "_SORT_KEY", {**build._SORT_KEY, "events": events_sort})
    mp.setattr(build, "segment_tables", tables)
    mp.setattr(build, "ranges_ending_at", ranges)
    mp.setattr(build, "run_inputs", inputs)
    mp.setattr(build, "BLOCK_ROWS", SMALL_BLOCKS)


def test_a_format_2_store_is_read_by_the_new_reader(tmp_path: Path) -> None:
    """Nine segments by a format 2 writer (its run 0-7 included), read by this reader."""
    j = J(tmp_path / "j")
    with pytest.MonkeyPatch.context() as mp:
        as_format_2(mp)
        write(j, 0, 9, create=True)
    assert pq.read_metadata(j.path("events", 0, 7)).metadata[b"wormjournal.index"] == b"2"
    check_reads(j)


def test_a_store_of_two_format_2_segments_grows_under_format_3(tmp_path: Path) -> None:
    """Format 2 objects for segments 0, 1; then format 3 seals 2..9 (no run of theirs merges a format 2 object)."""
    j = J(tmp_path / "j")
    with pytest.MonkeyPatch.context() as mp:
        as_format_2(mp)
        write(j, 0, 2, create=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build, "BLOCK_ROWS", SMALL_BLOCKS)
        write(j, 2, 10, create=False)
    check_reads(j)
    assert verify_store(LocalStore(j.store), public_keys=[j.verify_key]).findings == []


@pytest.mark.parametrize("old", [1, 8])
def test_a_format_2_store_can_be_sealed_by_the_format_3_writer(tmp_path: Path, old: int) -> None:
    """ATTACK (no attacker needed): a store a format 2 writer sealed (1 segment, or 8 with the run 0-7), opened by
    this writer. Its seal of segment 1 (run 0-1) or 15 (run 0-15) merges the signed format 2 events object 0-0
    or 0-7, read back with columns (event_id, segment, row, seq): merge_sorted's ``cast(EVENTS_SCHEMA)`` raises
    ValueError (field names differ), which write_seal_index does not catch (only IndexDamaged). Every seal fails
    from then on (the events stay in the WAL) and verify reports the stored segment object as orphan_object."""
    j = J(tmp_path / "j")
    with pytest.MonkeyPatch.context() as mp:
        as_format_2(mp)
        write(j, 0, old, create=True)
    write(j, old, 16, create=False)
    check_reads(j)
    assert verify_store(LocalStore(j.store), public_keys=[j.verify_key]).findings == []


# -- the merge ----------------------------------------------------------------------------------------------------


def test_merge_never_emits_rows_out_of_order() -> None:
    """merge_sorted trusts each source to be sorted: sources (2, 6 | 1) and (4, 9) merge to 2, 4, 1, 6, 9. An
    input authentic but not sorted by the current key (a format 2 events object, sorted by event id) would make
    a run in which lying footer statistics can hide a row from IndexFile.find: encode_sorted refuses to sign
    rows out of order."""
    def t(keys: list[int], seg: int) -> pa.Table:
        return pa.table({"fingerprint": keys, "segment": [seg] * len(keys), "row": list(range(len(keys)))},
                        schema=build.EVENTS_SCHEMA)
    sources = [[t([2, 6], 0), t([1], 0)], [t([4, 9], 1)]]
    with pytest.raises(IndexDamaged, match="out of order"):  # the writer signs no run of them
        build.encode_sorted("events", build.merge_sorted("events", sources), journal_id="j", stream="main", first=0,
                            last=1)


# -- the C page decoder ---------------------------------------------------------------------------------------------

DECODER_CHILD = textwrap.dedent(r'''
    import io, itertools, random, sys
    import pyarrow as pa, pyarrow.parquet as pq
    from wormjournal import native
    from wormjournal.segments import pages
    m = native.module
    assert hasattr(m, "decode_chunk")

    def zz(n):
        n = (n << 1) ^ (n >> 63); out = bytearray()
        while True:
            b = n & 0x7F; n >>= 7
            if n: out.append(b | 0x80)
            else: out.append(b); return bytes(out)

    def head(usize, csize, values, enc=0, dl=3):
        h = b"\x15" + zz(0) + b"\x15" + zz(usize) + b"\x15" + zz(csize) + b"\x2c"
        return h + b"\x15" + zz(values) + b"\x15" + zz(enc) + b"\x15" + zz(dl) + b"\x15" + zz(3) + b"\x00\x00"

    def zstd_rle(total, byte=0):  # a zstd frame of RLE blocks: 32 KiB that decompress to 1 GiB
        out, left = bytearray(b"\x28\xb5\x2f\xfd\x00\x38"), total
        while left:
            n = min(left, 1 << 17); left -= n
            out += ((0 if left else 1) | 2 | n << 3).to_bytes(3, "little") + bytes([byte])
        return bytes(out)

    def call(data, codec, kind, nullable, rows):
        v, o = pa.allocate_buffer((rows + 7) // 8 + 1), pa.allocate_buffer(4 * (rows + 1)) if kind == "b" else None
        try:
            x = pa.allocate_buffer(rows * 8 if kind == "l" else m.column_bound(data, 0, len(data), codec, rows))
            return m.decode_chunk(data, 0, len(data), codec, ord(kind), nullable, rows, v, o, x)
        except (ValueError, MemoryError) as e:
            return type(e).__name__

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20

    mode = sys.argv[1]
    if mode == "hostile":
        L = 1 << 62
        cases = {
            "truncated": head(16, 16, 2) + b"\x00" * 8,
            "num_values>rows": head(8, 8, 5) + b"\x01" * 8,
            "negative sizes": head(-8, -8, 1) + b"\x01" * 8,
            "negative values": head(8, 8, -1) + b"\x01" * 8,
            "huge sizes": head(L, L, 1) + b"\x01" * 8,
            "def levels claim more": head(13, 13, 1) + b"\x02\x00\x00\x00" + b"\xff\x7f" + b"\x01" * 7,
            "bitpacked huge": head(14, 14, 1) + b"\x06\x00\x00\x00" + b"\xff\xff\xff\xff\xff\x0f" + b"\x01" * 4,
            "bytearray len": head(8, 8, 1) + b"\xff\xff\xff\x7f" + b"abcd",
            "dict encoding": head(8, 8, 1, enc=8) + b"\x01" * 8,
            "empty": b"",
            "header only": head(0, 0, 0) * 100000,
        }
        refused = {"truncated", "num_values>rows", "negative sizes", "negative values", "huge sizes", "dict encoding"}
        for (name, data), codec, kind, nullable, rows in itertools.product(cases.items(), (0, 6), "lb", (0, 1),
                                                                            (0, 1, 2, 1 << 20)):
            got = call(data, codec, kind, nullable, rows)
            must_fail = name in refused or (name == "bytearray len" and kind == "b")
            assert isinstance(got, str) or not must_fail, (name, codec, kind, nullable, rows, got)
        print("ok")
    elif mode == "bomb":
        body = zstd_rle(1 << 30)
        before = rss()
        got = call(head(1 << 30, len(body), 1) + body, 6, "l", 1, 1)
        print(got, rss() - before)
    elif mode == "fuzz":
        rng = random.Random(int(sys.argv[2]))
        schema = pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.binary(), True), ("d", pa.int64(), True)])
        n = 200
        t = pa.table({"a": list(range(n)), "b": [f"s{i}" * (i % 5) for i in range(n)],
                      "c": [None if i % 7 == 0 else bytes([i % 256]) * (i % 9) for i in range(n)],
                      "d": [None if i % 3 == 0 else i * 1000 for i in range(n)]}, schema=schema)
        disagree = {"none": 0, "zstd": 0}
        for trial in range(int(sys.argv[3])):
            buf = io.BytesIO()
            codec = rng.choice(["zstd", "none"])
            pq.write_table(t, buf, compression=codec, use_dictionary=False,
                           data_page_size=rng.choice([64, 256, 4096]), write_page_index=True, row_group_size=n)
            data = bytearray(buf.getvalue())
            md = pq.read_metadata(pa.BufferReader(bytes(data)))
            chunks = pages.chunks_of_metadata(md, [0])
            lo, hi = chunks[0][1][0][0], chunks[0][1][-1][1]
            for _ in range(rng.choice([1, 1, 2, 5])):
                i = rng.randrange(lo, hi)
                data[i] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256), data[i] ^ 1 << rng.randrange(8)])
            if rng.random() < 0.2:
                cut = rng.randrange(lo, hi)
                data[cut:cut + rng.randrange(1, 40)] = b""
            data = bytes(data)
            mine = pages.decode_plain(data, schema, chunks)
            if mine is None:
                continue
            try:
                theirs = pq.read_table(pa.BufferReader(data)).cast(schema)
            except Exception:
                theirs = None
            if theirs is None or not mine.equals(theirs):
                disagree[codec] += 1
        print(disagree["none"], disagree["zstd"])
''')


def child(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", DECODER_CHILD, *args], capture_output=True, text=True, timeout=60)


def test_hostile_pages_are_refused_without_a_crash() -> None:
    """Truncated pages, sizes past the chunk, negative sizes and counts, def levels that claim more values, a
    length prefix past the page, a dictionary encoding, 100,000 empty page headers: ValueError, no crash."""
    r = child("hostile")
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])


@pytest.mark.parametrize("seed", range(3))
def test_mutated_chunks_do_not_crash_and_plain_ones_decode_as_pyarrow_reads_them(seed: int) -> None:
    """Random bytes of real column chunks changed or cut: the process survives; when the C decoder returns rows
    of an uncompressed chunk, pyarrow reads the same rows from the same bytes."""
    r = child("fuzz", str(seed), "300")
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.split()[0] == "0", r.stdout


def test_mutated_zstd_chunks_never_crash_the_decoder() -> None:
    """A byte changed inside a zstd page body: the C decoder's libzstd (the system's) and pyarrow's bundled zstd
    may both accept the corrupt frame (Parquet's zstd frames carry no checksum) and decode it to different
    bytes (seed 0, trial 80: an int64 of 183 where pyarrow reads 695). Which wrong value a corrupt page gives
    depends on the decoder; every read refuses both, their hashes do not match (tests/test_replay_tamper.py,
    segment-payload-byte-changed). What must hold: no crash, whatever the bytes."""
    r = child("fuzz", "0", "300")
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])


def test_a_zstd_bomb_page_does_not_keep_a_gigabyte() -> None:
    """ATTACK: one page of a tampered segment (32 KiB: a zstd frame of RLE blocks with uncompressed_page_size
    2**30) that a lookup's page read hands to decode_chunk. The page is refused (ValueError), but its 1 GiB of
    decompressed bytes stays in the static SCRATCH buffer, which never shrinks: the reader process keeps about
    1 GiB more resident memory for its lifetime (and pyarrow's fallback decompresses the page once more)."""
    r = child("bomb")
    assert r.returncode == 0, r.stderr[-2000:]
    refused, grown = r.stdout.split()
    assert refused == "ValueError"
    assert int(grown) < 256, f"resident memory grew by {grown} MiB after a refused 32 KiB page"


# -- a fresh reader's chain from the newest checkpoint (11a, "Manifest hashes") ----------------------------------------


def manifests_read(j: J, call: Any) -> tuple[Any, int]:
    """What ``call(reader)`` returns (or the IntegrityError it raises) and how many manifests a fresh reader read."""
    store = ManifestCounter(LocalStore(j.store))
    r = Reader(store, public_keys=[j.verify_key])
    try:
        return call(r), store.manifests
    except IntegrityError as e:
        return e, store.manifests


def events_of(j: J, x: str) -> list[str]:
    return sorted(i for i, (y, _) in j.truth.items() if y == x)


def test_a_fresh_reader_reads_the_manifests_of_the_cover_and_of_what_it_returns(j: J) -> None:
    """Ten segments: the newest checkpoint, the manifests of the cover's runs (7 and 9), the one it looks for
    after them (10, absent) and that of the segment read: not all ten."""
    got, read = manifests_read(j, lambda r: [e.event_id for e in r.events("y-004")])
    assert got == events_of(j, "y-004") and read == 4


def resign_manifest(j: J, n: int) -> None:
    """Stolen key: manifest ``n`` re-signed with another time (a valid signature; links and checkpoints as they
    were)."""
    journal_id = j.reader().identity.journal_id
    key = load_keys(j.root / "keys", journal_id)[0]
    path = j.store / layout.manifest("main", n)
    m = Manifest.parse(split_note(path.read_bytes())[0])
    overwrite(path, dataclasses.replace(m, time="2020-01-01T00:00:00.000000Z").sign(key))


def test_a_manifest_that_is_not_the_one_the_checkpoint_commits_to_is_refused_where_it_is_read(j: J) -> None:
    """Manifest 4 re-signed with the journal's own key: a read of segment 4 refuses it (its hash is not the one the
    newest checkpoint's root commits to); a read elsewhere returns the truth; verify reports it."""
    resign_manifest(j, 4)
    got, _ = manifests_read(j, lambda r: r.events("y-004"))
    assert isinstance(got, IntegrityError) and "checkpoint commits to" in str(got)
    got, _ = manifests_read(j, lambda r: [e.event_id for e in r.events("y-008")])
    assert got == events_of(j, "y-008")
    assert not verify_store(j.store, public_keys=[j.verify_key]).ok


def test_claims_that_do_not_make_the_checkpoint_root_send_a_reader_through_every_manifest(j: J) -> None:
    """Runs' footers claim other manifest hashes (they are not signed): the root they make is not the checkpoint's,
    so a fresh reader walks every manifest and reads the truth. Claims cut short are passed over: the runs' parts
    stand in for them, down to single segments, as for a damaged object."""
    for claim in ["ab", "abab", "zz"]:
        runs = [(k, a, b) for k, a, b in signed_objects(j) if k == "executions" and a < b]
        assert len(runs) == 5  # 0-1, 0-3, 0-5, 0-7, 8-9
        for _, first, last in runs:
            text = claim * 32 * (last - first) if claim != "abab" else claim
            rewrite_claims(j.path("executions", first, last), text)
        got, read = manifests_read(j, lambda r: [e.event_id for e in r.events("y-004")])
        # wrong claims: 7 and 9 for the claims, then the walk over 0..9; claims cut short or not hex: the runs'
        # parts, down to single segments, whose own manifests give the hashes, and 10 looked for after them
        assert got == events_of(j, "y-004") and read == (12 if claim == "ab" else 11), claim
    check_reads(j)


def rewrite_claims(path: Path, claim: str) -> None:
    """An index object with ``claim`` as its footer's manifest hashes, nothing else changed."""
    pf = pq.ParquetFile(path)
    meta = dict(pf.metadata.metadata)
    meta[build.MANIFESTS_KEY.encode()] = claim.encode()
    table = pf.read().replace_schema_metadata(None)
    make_writable(path)
    with pq.ParquetWriter(path, table.schema, compression="zstd", store_schema=False) as w:
        w.write_table(table, row_group_size=SMALL_BLOCKS["executions"])
        w.add_key_value_metadata(meta)
    assert pq.ParquetFile(path).metadata.metadata[build.MANIFESTS_KEY.encode()] == claim.encode()
