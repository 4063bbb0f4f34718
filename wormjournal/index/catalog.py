"""Finding rows through the index: which objects cover which segments, and what they say.

The index is never trusted for content (events are verified where they are read),
and never allowed to hide a segment: a segment no index object covers, or one whose
index object was computed from other bytes than the segment its manifest signs, is
read directly (its key columns only) instead.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..storage import layout
from ..storage.base import ObjectReader
from ..storage.objectfile import ObjectFile
from . import build

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class IndexObject:
    name: str
    size: int
    first: int
    last: int


class Catalog:
    """The index objects of one stream, with their footers cached (objects never change)."""

    def __init__(self, store: ObjectReader, journal_id: str, stream: str,
                 segment_sha256: Callable[[int], str], scan_segment: Callable[[int], dict[str, pa.Table]]) -> None:
        self.store = store
        self.journal_id = journal_id
        self.stream = stream
        self._segment_sha256 = segment_sha256
        self._scan_segment = scan_segment
        self._files: dict[str, pq.ParquetFile] = {}

    def cover(self, kind: str, segments: int) -> tuple[list[IndexObject], list[int]]:
        """Index objects covering segments 0..segments-1 (largest runs first), and the uncovered segments."""
        best: dict[int, IndexObject] = {}
        for info in self.store.list(layout.index_prefix(self.stream, kind)):
            parsed = layout.parse_index(info.name)
            if parsed is None or parsed[3] >= segments:
                continue
            obj = IndexObject(info.name, info.size, parsed[2], parsed[3])
            if obj.first not in best or obj.last > best[obj.first].last:
                best[obj.first] = obj
        chosen, missing = [], []
        pos = 0
        while pos < segments:
            obj = best.get(pos)
            if obj is None:
                missing.append(pos)
                pos += 1
            else:
                chosen.append(obj)
                pos = obj.last + 1
        if missing:
            log.info("stream %s: %d segment(s) have no index object; reading them directly (run `wormjournal reindex`)",
                     self.stream, len(missing))
        return chosen, missing

    def _file(self, obj: IndexObject) -> pq.ParquetFile | None:
        pf = self._files.get(obj.name)
        if pf is None:
            try:
                pf = pq.ParquetFile(ObjectFile(self.store, obj.name, obj.size))
            except Exception as e:  # a damaged index object is ignored: the segments are the truth
                log.warning("index object %s is unreadable (%s); reading its segments directly", obj.name, e)
                return None
            meta = pf.schema_arrow.metadata or {}
            span = (meta.get(b"wormjournal.first_segment", b"").decode(), meta.get(b"wormjournal.last_segment", b"").decode())
            if (meta.get(b"wormjournal.journal", b"").decode() != self.journal_id or span != (str(obj.first), str(obj.last))
                    or len(build.sources_of(meta)) != obj.last - obj.first + 1):
                log.warning("index object %s is not this journal's; reading its segments directly", obj.name)
                return None
            self._files[obj.name] = pf
        return pf

    def lookup(self, kind: str, segments: int, column: str, value: Any = None) -> pa.Table:
        """Rows of the ``kind`` tables of all segments whose ``column`` equals ``value``
        (every row when ``value`` is None); row groups whose statistics exclude it are skipped."""
        objects, missing = self.cover(kind, segments)
        parts: list[pa.Table] = []
        for obj in objects:
            pf = self._file(obj)
            if pf is None:
                missing.extend(range(obj.first, obj.last + 1))
                continue
            try:
                table = self._read_matching(pf, column, value)
            except Exception as e:
                log.warning("index object %s cannot be read (%s); reading its segments directly", obj.name, e)
                missing.extend(range(obj.first, obj.last + 1))
                continue
            sources = build.sources_of(pf.schema_arrow.metadata)
            # Rows computed from other bytes than the signed segment are replaced by a scan of it.
            segs = set(table.column("segment").to_pylist()) if table.num_rows else set()
            outside = {s for s in segs if not obj.first <= s <= obj.last}
            stale = outside | {s for s in segs - outside if sources[s - obj.first] != self._segment_sha256(s)}
            if stale:
                log.warning("index object %s disagrees with segments %s; reading them directly", obj.name, sorted(stale))
                keep = pc.invert(pc.is_in(table.column("segment"), pa.array(sorted(stale), pa.int64())))
                table = table.filter(keep)
                missing.extend(sorted(stale - outside))
            parts.append(table)
        for segment in sorted(set(missing)):
            table = self._scan_segment(segment)[kind]
            if value is not None:
                table = table.filter(pc.equal(table.column(column), pa.scalar(value, table.schema.field(column).type)))
            parts.append(table)
        schema = build.SCHEMAS[kind]
        parts = [p.replace_schema_metadata(None).cast(schema) for p in parts if p.num_rows]
        return pa.concat_tables(parts) if parts else schema.empty_table()

    @staticmethod
    def _read_matching(pf: pq.ParquetFile, column: str, value: Any) -> pa.Table:
        md = pf.metadata
        index = pf.schema_arrow.get_field_index(column)
        groups = []
        for j in range(md.num_row_groups):
            stats = md.row_group(j).column(index).statistics
            if value is None or stats is None or not stats.has_min_max or stats.min <= value <= stats.max:
                groups.append(j)
        table = pf.read_row_groups(groups) if groups else pf.schema_arrow.empty_table()
        if value is not None:
            table = table.filter(pc.equal(table.column(column), pa.scalar(value, table.schema.field(column).type)))
        return table
