"""Rebuild the index of a store from its segments alone (``wormjournal reindex``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pyarrow as pa

from ..errors import IndexDamaged
from ..segments.manifest import IndexRoot
from ..segments.notes import VerifyKey
from ..storage import layout
from ..storage.base import Store
from . import build
from .catalog import IndexFile, IndexObject
from .reader import Reader


@dataclasses.dataclass
class ReindexResult:
    stream: str
    segments: int
    written: list[str]  # index objects that were missing and are now stored
    damaged: list[str]  # objects present that do not match their signed root (write-once: left as they are)
    unrebuildable: list[str]  # missing objects whose rebuilt rows do not give the signed root


def reindex_store(store: Store, *, public_keys: Sequence[VerifyKey] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[ReindexResult]:
    """Write every index object a manifest signs the root of and the store lacks, from the segments
    (or from smaller index objects that check out), each one checked against its signed root.

    Manifests are signature-checked first (with ``public_keys``, or the store's keys), so
    the index is only ever rebuilt to what the writer signed. Objects present are checked
    and, if damaged, reported (the store is write-once; readers go around them).
    Raises IntegrityError on a manifest or segment that does not verify.
    """
    names = [info.name for info in store.list(layout.MANIFESTS_PREFIX)]
    results = []
    total, done = len(names), 0
    for stream in layout.streams_from_names(names):
        reader = Reader(store, stream=stream, public_keys=public_keys)
        count = reader.refresh()
        present = {info.name: info.size for kind in layout.INDEX_KINDS
                   for info in store.list(layout.index_prefix(stream, kind))}
        result = ReindexResult(stream, count, [], [], [])
        cache: dict[str, pa.Table] = {}
        starts: list[dict[str, int]] = []  # each execution's start, read once a tenants object is rebuilt
        bound = {layout.index_object(stream, r.kind, r.first, r.last): r
                 for n in range(count) for r in reader.manifest(n).index}

        # called only within this iteration; its state bound as defaults for the linter (B023)
        def rows(kind: str, first: int, last: int, *, stream: str = stream, reader: Reader = reader,
                 cache: dict[str, pa.Table] = cache, bound: dict[str, IndexRoot] = bound,
                 present: dict[str, int] = present, result: ReindexResult = result,
                 starts: list[dict[str, int]] = starts) -> pa.Table:
            """The rows of an index object: stored and authentic, or rebuilt from the parts below it."""
            name = layout.index_object(stream, kind, first, last)
            if name in cache:
                return cache[name]
            table, root = None, bound.get(name)
            if root is not None and name in present and name not in result.damaged:
                try:
                    obj = IndexObject(name, first, last)
                    table = IndexFile(store, obj, kind, root, reader.identity.journal_id, stream).all()
                except IndexDamaged:
                    result.damaged.append(name)
            if table is None and first == last and kind == "tenants":  # each execution's start, from all segments
                if not starts:
                    rows_all = reader._lookup("executions")[0]  # noqa: SLF001 - authenticated, reads around damage
                    starts.append(build.execution_starts(rows_all))
                own = reader._scan_segment(first)["executions"]  # noqa: SLF001 - checked against its manifest
                table = build.sort_rows(kind, build.tenant_rows(own, starts[0]))
            elif table is None and first == last:
                table = reader._scan_segment(first)[kind]  # noqa: SLF001 - checked against its manifest
            elif table is None:
                parts = [rows(kind, a, b) for a, b in build.run_inputs(first, last)]
                merged = list(build.merge_runs(kind, [[p] for p in parts]))
                table = pa.concat_tables(merged) if merged else build.SCHEMAS[kind].empty_table()
            if last - first < build.FANOUT:
                cache[name] = table  # small: kept for the run above it
            return table

        for n in range(count):
            for root in reader.manifest(n).index:
                name = layout.index_object(stream, root.kind, root.first, root.last)
                if name in present:
                    if name not in result.damaged and name not in cache:
                        try:  # every row group hashed: damage under a genuine footer is found too
                            IndexFile(store, IndexObject(name, root.first, root.last), root.kind, root,
                                      reader.identity.journal_id, stream).all()
                        except IndexDamaged:
                            result.damaged.append(name)
                    continue
                data, got = build.encode(root.kind, rows(root.kind, root.first, root.last),
                                         journal_id=reader.identity.journal_id, stream=stream,
                                         first=root.first, last=root.last,
                                         manifests=build.run_manifests(reader.manifest_hashes(), root.first,
                                                                       root.last))
                if got != root:
                    result.unrebuildable.append(name)
                    continue
                store.put(name, data)
                present[name] = len(data)
                result.written.append(name)
            done += 1
            if progress is not None:
                progress(done, total)
        results.append(result)
    return results
