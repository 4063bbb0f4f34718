"""Which index objects exist and which a lookup reads (FORMAT.md 11a, "Runs" and "Cover"), and the merge
that builds a run a row group at a time."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from s3_fixtures import S3Bucket

from wormjournal import Journal, JournalConfig, Reader
from wormjournal.index import build
from wormjournal.storage import open_store

from conftest import ManifestCounter


def octal_digits(n: int) -> int:
    return len(oct(n)) - 2


def test_the_cover_is_at_most_two_objects_per_octal_digit() -> None:
    for count in [*range(1, 1200), 4095, 4096, 4097, 5000, 8191, 10_000, 33_333]:
        cover = build.cover(count)
        assert [first for first, _ in cover] == [0] + [last + 1 for _, last in cover[:-1]]
        assert cover[-1][1] == count - 1
        for first, last in cover:  # each one an object some seal writes: the seal of its last segment
            assert build.is_object_range(first, last) and (first, last) in build.ranges_ending_at(last)
        whole = count // build.FANOUT**build.MAX_LEVEL  # blocks of 4096: one object each
        assert len(cover) <= whole + 2 * octal_digits(count % build.FANOUT**build.MAX_LEVEL), count
    assert build.cover(600) == [(0, 511), (512, 575), (576, 591), (592, 599)]  # 600 = 0o1130
    assert build.cover(511) == [(0, 383), (384, 447), (448, 495), (496, 503), (504, 509), (510, 510)]  # 0o777


def test_what_a_seal_writes_and_what_a_run_merges() -> None:
    written: dict[tuple[int, int], int] = {}
    for n in range(5000):
        for first, last in build.ranges_ending_at(n):
            assert last == n and build.is_object_range(first, last) and (first, last) not in written
            written[(first, last)] = n
            inputs = build.run_inputs(first, last)
            if first == last:
                assert inputs == []
                continue
            # The inputs are written before the run (by earlier seals, or this one) and cover exactly its segments.
            assert [a for a, _ in inputs] == [first] + [b + 1 for _, b in inputs[:-1]] and inputs[-1][1] == last
            assert all(r in written for r in inputs) and len(inputs) in (2, 3)
    assert (0, 4095) in written and (0, 4096 * 2 - 1) not in written  # no run beyond 8**4 segments
    assert not build.is_object_range(1, 2) and not build.is_object_range(0, 2) and not build.is_object_range(8, 23)
    assert build.ranges_ending_at(15) == [(15, 15), (8, 15), (0, 15)]  # its own; 8 blocks of 1; 2 blocks of 8
    assert build.ranges_ending_at(13) == [(13, 13), (8, 13)]  # 6 blocks of 1
    assert build.run_inputs(8, 13) == [(8, 11), (12, 12), (13, 13)] and build.run_inputs(0, 15) == [(0, 7), (8, 15)]


def random_rows(rng: random.Random, kind: str, n: int) -> pa.Table:
    keys = [f"k-{rng.randrange(40):03d}" for _ in range(n)]
    if kind == "events":
        cols = {"fingerprint": [rng.randrange(60) for _ in range(n)], "segment": [rng.randrange(9) for _ in range(n)],
                "row": list(range(n))}
    else:
        cols = {"thread_id": keys, "execution_id": [f"x-{rng.randrange(5)}" for _ in range(n)],
                "segment": list(range(n))}
    return build.sort_rows(kind, pa.table(cols, schema=build.SCHEMAS[kind]))


def chunks(rng: random.Random, table: pa.Table) -> list[pa.Table]:
    out, pos = [], 0
    while pos < table.num_rows:
        size = rng.choice([0, 1, 2, 5, 17, 100])
        out.append(table.slice(pos, size))
        pos += size
    return out


@pytest.mark.parametrize("seed", range(40))
def test_a_merge_a_table_at_a_time_is_the_sort_of_all_rows(seed: int) -> None:
    """Sources cut into tables anywhere, a key's rows across several tables and sources: the same rows, in the
    same order, as sorting all of them at once."""
    rng = random.Random(seed)
    kind = rng.choice(["threads", "events"])
    sources = [random_rows(rng, kind, rng.choice([0, 1, 7, 60, 300])) for _ in range(rng.randint(1, 4))]
    if kind == "threads":  # rows unique across sources, as runs of distinct segments are
        sources = [s.set_column(2, "segment", pa.array([i * 10_000 + v for v in s.column("segment").to_pylist()],
                                                       pa.int64())) for i, s in enumerate(sources)]
        sources = [build.sort_rows(kind, s) for s in sources]
    merged = list(build.merge_sorted(kind, [chunks(rng, s) for s in sources]))
    result = pa.concat_tables(merged) if merged else build.SCHEMAS[kind].empty_table()
    assert result.equals(build.sort_rows(kind, pa.concat_tables(sources)))
    assert all(t.num_rows for t in merged)


# -- requests per lookup -----------------------------------------------------------------------------------------


def budget(segments: int) -> int:
    return 2 * math.ceil(math.log(segments, 8)) + 4


def grow(j: Journal, start: int, stop: int) -> list[str]:
    """Segments start..stop-1, each of four short executions (six events each, in that segment alone)."""
    ids = []
    for s in range(start, stop):
        batch = []
        for k in range(4):
            ids.append(f"run-{s:04d}-{k}")
            batch += [{"event_type": "node_completed", "execution_id": ids[-1], "tenant_id": f"tenant-{k % 3}",
                       "payload": {"i": i}} for i in range(6)]
        j.append_batch(batch)
        j.seal()
    return ids


def warm_requests(store: Any, ids: list[str], segments: int) -> dict[str, list[tuple[int, int]]]:
    """(requests, LISTs) of warm calls: a Reader that has read each kind before, its cached index rows dropped,
    reading keys in segments it has not opened (so their footers and offset indexes count too)."""
    r = Reader(store)
    r.get_event(r.events(ids[0])[0].event_id)
    r.executions("tenant-0", limit=20)
    rng = random.Random(segments)
    out: dict[str, list[tuple[int, int]]] = {"events": [], "get_event": [], "executions": [], "fresh": [],
                                             "fresh manifests": []}
    for x in rng.sample(ids[4:], 4):
        fresh = Reader(ManifestCounter(open_store(store) if isinstance(store, Path) else store))
        event_id = fresh.events(x)[3].event_id
        out["fresh"].append((fresh.store.requests, fresh.store.lists))
        out["fresh manifests"].append((fresh.store._store.manifests, 0))
        for call in ("events", "get_event", "executions"):
            r.catalog.drop_cached_rows()
            q0, l0 = r.store.requests, r.store.lists
            if call == "events":
                r.events(x)
            elif call == "get_event":
                r.get_event(event_id)
            else:
                r.executions("tenant-1", limit=20)
            out[call].append((r.store.requests - q0, r.store.lists - l0))
    return out


def check_counts(n: int, counts: dict[str, list[tuple[int, int]]]) -> None:
    for call in ("events", "get_event", "executions"):
        assert max(q for q, _ in counts[call]) <= budget(n), (n, call, counts[call])
    warm = [lists for call in ("events", "get_event", "executions") for _, lists in counts[call]]
    assert warm == [0] * len(warm), (n, counts)
    # A fresh reader: the trust (journal.json, key history), the newest checkpoint and the newest head, per object of
    # the cover its last manifest and its footer, then the lookup: never every manifest.
    assert max(q for q, _ in counts["fresh"]) <= budget(n) + FRESH_EXTRA, (n, counts["fresh"])
    assert max(q for q, _ in counts["fresh manifests"]) <= 2 * math.ceil(math.log(n, 8)) + 2, (n, counts)


# journal.json, the key history (a LIST and its entry), the checkpoints and the heads (a LIST and the newest of each)
FRESH_EXTRA = 8


def test_warm_lookups_cost_log_of_the_store_in_requests(tmp_path: Path) -> None:
    """At 5, 50, 200 and 600 segments: no LIST, and at most 2*ceil(log8 n)+4 requests for events, get_event (the
    index objects of the cover, the segment's footer, offset index and pages, the HEAD of the next manifest) and
    executions(tenant, limit=20) (the first rows of the tenant in each tenants object of the cover); a fresh
    reader's first events() at most FRESH_EXTRA more, reading a manifest per object of the cover, not all n."""
    config = JournalConfig(seal_max_age_seconds=None, seal_max_events=24, seal_worker=False)
    ids: list[str] = []
    with Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=config) as j:
        done = 0
        for n in (5, 50, 200, 600):
            ids += grow(j, done, n)
            done = n
            check_counts(n, warm_requests(tmp_path / "store", ids, n))


def test_warm_lookups_on_s3_cost_what_they_cost_locally(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    """The same over HTTP (moto's server), where each request is a round trip: 5 and 50 segments (the bench,
    ``scripts/bench_lookup.py --requests``, prints 200 and 600 too)."""
    config = JournalConfig(seal_max_age_seconds=None, seal_max_events=24, seal_worker=False)
    store = s3_bucket.store("j")
    ids: list[str] = []
    with Journal.create(store, key_dir=tmp_path / "keys", wal_dir=tmp_path / "wal", config=config) as j:
        done = 0
        for n in (5, 50):
            ids += grow(j, done, n)
            done = n
            check_counts(n, warm_requests(store, ids, n))


@pytest.mark.parametrize("seed", range(12))
def test_a_tenants_run_holds_one_row_per_execution(seed: int) -> None:
    """Runs of tenants rows combine each execution's rows (its first segment, first seq and thread, its last
    seq, time and type, the sum of its rows), whichever parts and tables they came in."""
    rng = random.Random(seed)
    per_segment = []
    for segment in range(9):
        rows = []
        for x in rng.sample(range(12), rng.randint(0, 6)):
            first = segment * 100 + x * 5
            rows.append({"tenant_id": f"t-{x % 3}", "started": 1_000 + x, "execution_id": f"x-{x:02d}",
                         "segment": segment, "rows": 2, "first_seq": first, "last_seq": first + 1,
                         "last_ts": 5_000 + first, "thread_id": f"th-{segment}", "last_event_type": f"e{segment}"})
        table = pa.Table.from_pylist(rows, schema=build.TENANTS_SCHEMA.remove_metadata()) if rows else \
            build.TENANTS_SCHEMA.empty_table()
        per_segment.append(build.sort_rows("tenants", table.cast(build.TENANTS_SCHEMA)))
    whole = build.combine_executions(build.sort_rows("tenants", pa.concat_tables(per_segment)))
    parts = [per_segment[0:3], per_segment[3:7], per_segment[7:9]]
    runs = [build.combine_executions(build.sort_rows("tenants", pa.concat_tables(p))) for p in parts]
    merged = list(build.merge_runs("tenants", [chunks(rng, r) for r in runs]))
    result = pa.concat_tables(merged) if merged else build.TENANTS_SCHEMA.empty_table()
    assert result.equals(whole)
    assert result.num_rows == len(set(result.column("execution_id").to_pylist()))  # one per execution (and tenant)
    by_x = {r["execution_id"]: r for r in result.to_pylist()}
    for x, r in by_x.items():
        mine = [row for t in per_segment for row in t.to_pylist() if row["execution_id"] == x]
        assert r["rows"] == 2 * len(mine) and r["segment"] == min(m["segment"] for m in mine)
        assert r["last_event_type"] == f"e{max(m['segment'] for m in mine)}"
