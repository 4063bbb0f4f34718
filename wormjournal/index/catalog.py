"""Finding rows through the index: authenticated, and proven complete for a key.

An index object is used only when the manifest of its last segment signs its root
(FORMAT.md, "Index"). Its footer's block roots must make that root; each row
group read is hashed and must give its block root. Rows are sorted by the key,
so the rows with a key are all of them once the rows just before and just after
are read too (authenticated, with other keys): an index object cannot leave a
row out, and its statistics cannot hide one. A segment that no usable object
covers is read directly, after checking its bytes against its manifest.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import IndexDamaged, JournalError, NotFoundError
from ..segments import merkle, pages
from ..segments.manifest import IndexRoot
from ..segments.table import decode_block_roots
from ..storage import layout
from ..storage.base import ObjectReader
from ..storage.objectfile import ObjectFile
from . import build

log = logging.getLogger(__name__)

_GROUP_CACHE = 32  # authenticated row groups kept per index object


@dataclasses.dataclass(frozen=True)
class IndexObject:
    name: str
    first: int
    last: int
    size: int | None = None  # None: a HEAD finds it when the object is opened


class IndexFile:
    """One index object opened by its footer, checked against its signed root; rows read on demand."""

    def __init__(self, store: ObjectReader, obj: IndexObject, kind: str, root: IndexRoot, journal_id: str,
                 stream: str) -> None:
        self.name = obj.name
        self.kind = kind
        try:
            self._file = ObjectFile(store, obj.name, obj.size)  # missing: NotFoundError
            self._pf = pq.ParquetFile(self._file)
            meta = {k.decode(): v.decode() for k, v in (self._pf.metadata.metadata or {}).items()}
            block = int(meta[build.BLOCK_ROWS_KEY])
            roots = decode_block_roots(meta[build.BLOCK_ROOTS_KEY])
        except NotFoundError as e:  # its manifest signs it: gone, or never stored by a seal that failed
            raise IndexDamaged(obj.name, "is missing") from e
        except JournalError:
            raise
        except Exception as e:  # torn or not Parquet: pyarrow's errors are not typed for us
            raise IndexDamaged(obj.name, f"cannot be read: {e}") from e
        self.format = meta.get("wormjournal.index", "")
        self.schema = build.EVENTS_SCHEMA_2 if kind == "events" and self.format == "2" else build.SCHEMAS[kind]
        self.key = self.schema.names[0]  # every kind's rows are sorted by their first column
        expected = {
            "wormjournal.journal": journal_id,
            "wormjournal.stream": stream,
            "wormjournal.kind": kind,
            "wormjournal.first_segment": str(obj.first),
            "wormjournal.last_segment": str(obj.last),
        }
        if (self.format not in build.READ_FORMATS or any(meta.get(k) != v for k, v in expected.items())
                or self._pf.schema_arrow.remove_metadata() != self.schema):
            raise IndexDamaged(obj.name, "is not this journal's index object for those segments")
        md = self._pf.metadata
        sizes = [md.row_group(j).num_rows for j in range(md.num_row_groups)]
        if sum(sizes) == 0:
            sizes = []
        aligned = block > 0 and not block & (block - 1) and all(n == block for n in sizes[:-1]) and (
            not sizes or 0 < sizes[-1] <= block)
        if not aligned or len(roots) != len(sizes) or sum(sizes) != root.rows:
            raise IndexDamaged(obj.name, f"does not hold {root.rows} rows in Merkle blocks")
        if merkle.root_from_leaf_hashes(roots) != root.root:
            raise IndexDamaged(obj.name, "does not match the root its manifest signs")
        self._roots = tuple(roots)
        self._block = block
        self.manifests = build.parse_manifests(meta, obj.first, obj.last)  # a claim: not signed (11a)
        self._groups: OrderedDict[int, tuple[pa.Table, tuple[Any, ...]]] = OrderedDict()  # and its keys, sorted
        self._stats = _key_statistics(md, self._pf.schema_arrow.get_field_index(self.key))

    @property
    def groups(self) -> int:
        return len(self._roots)

    def _read(self, j: int) -> pa.Table:
        """Row group ``j`` read from the object, authenticated against its block root (not cached)."""
        try:
            table = self._decode(j)
            if table is None:
                table = self._pf.read_row_group(j).replace_schema_metadata(None)
        except Exception as e:
            raise IndexDamaged(self.name, f"row group {j} cannot be read: {e}") from e
        if merkle.root_of_packed(build.packed_leaf_hashes(self.kind, table, self.schema)) != self._roots[j]:
            raise IndexDamaged(self.name, f"row group {j} does not match its block root (rows altered)")
        return table

    def _decode(self, j: int) -> pa.Table | None:
        """Row group ``j`` fetched in one read and decoded by the C extension (pages.decode_plain), or None when
        its column chunks are laid out otherwise (an object written with dictionaries): pyarrow reads it then.
        The schema was checked when the object was opened; the rows' hashes check what is decoded."""
        group = pages.chunks_of_metadata(self._pf.metadata, [j])
        chunks = group[0][1]
        if not chunks or not pages.decodable(group):
            return None
        lo, hi = min(c[0] for c in chunks), max(c[1] for c in chunks)
        data = self._file.read_range(lo, hi - lo)
        return pages.decode_plain(data, self.schema, [(group[0][0], [(a - lo, b - lo, codec, t)
                                                                   for a, b, codec, t in chunks])])

    def _group(self, j: int) -> tuple[pa.Table, tuple[Any, ...]]:
        """Row group ``j``, authenticated against its block root, and its keys, checked to be sorted."""
        cached = self._groups.get(j)
        if cached is not None:
            self._groups.move_to_end(j)
            return cached
        table = self._read(j)
        # A tuple of str or int: the garbage collector stops walking it once it has seen it (a list it walks at
        # every full collection, which with a few hundred cached groups is what makes a read's slowest ones slow).
        keys = tuple(table.column(self.key).to_pylist())
        if list(keys) != sorted(keys):  # linear on sorted keys, and in C
            raise IndexDamaged(self.name, "is not sorted by its key")
        self._groups[j] = table, keys
        if len(self._groups) > _GROUP_CACHE:
            self._groups.popitem(last=False)
        return table, keys

    def group(self, j: int) -> pa.Table:
        """Row group ``j``, authenticated against its block root."""
        return self._group(j)[0]

    def all(self) -> pa.Table:
        parts = [self.group(j) for j in range(self.groups)]
        return pa.concat_tables(parts) if parts else self.schema.empty_table()

    def rows(self) -> Iterator[pa.Table]:
        """Every row, a row group at a time, each authenticated as it is read (and not kept)."""
        for j in range(self.groups):
            cached = self._groups.get(j)
            if cached is not None:
                yield cached[0]
                continue
            yield self._read(j)

    def _hint(self, value: Any) -> tuple[int, int]:
        """The row groups that should hold ``value`` by the footer statistics (which are not
        authenticated: only where to start looking), or where it would be inserted."""
        if self._stats is None:
            return 0, self.groups - 1
        lows, highs = self._stats
        # Sorted statistics put the groups holding ``value`` at [first high >= value, last low <= value]; any
        # others give some range of groups, which find() widens until the rows around the key prove it whole.
        first = bisect.bisect_left(highs, value)
        last = bisect.bisect_right(lows, value) - 1
        first, last = min(max(first, 0), self.groups - 1), min(max(last, 0), self.groups - 1)
        return (first, last) if first <= last else (last, first)

    def find(self, value: Any) -> pa.Table:
        """Every row whose key is ``value``, proven to be all of them."""
        if not self.groups:
            return self.schema.empty_table()
        lo, hi = self._hint(value)
        while True:
            # Each group's keys are sorted (checked once); across groups, each must start at or after the last.
            groups = [self._group(j) for j in range(lo, hi + 1)]
            keys: list[Any] = []
            for _, part in groups:
                if keys and part and part[0] < keys[-1]:
                    raise IndexDamaged(self.name, "is not sorted by its key")
                keys.extend(part)
            start, stop = bisect.bisect_left(keys, value), bisect.bisect_right(keys, value)
            # The rows just outside [start, stop) must be read, so that they show other keys.
            if start == 0 and lo > 0:
                lo -= 1
            elif stop == len(keys) and hi < self.groups - 1:
                hi += 1
            else:
                break
        table = pa.concat_tables([table for table, _ in groups])
        return table.slice(start, stop - start)


    def rows_from(self, value: Any) -> Iterator[dict[str, Any]]:
        """The rows whose key is ``value``, in stored order, read a row group at a time (each authenticated) for
        as long as the caller takes them. The row before the first is read too: it has another key, so no row
        with the key comes before them; the rows end at the first row with another key (or the last row)."""
        if not self.groups:
            return
        j = self._hint(value)[0]
        while True:
            _, keys = self._group(j)
            i = bisect.bisect_left(keys, value)
            if i == 0 and j > 0 and self._group(j - 1)[1][-1:] >= (value,):
                j -= 1  # the footer statistics said too late: the rows begin in an earlier group
            elif i == len(keys) and j < self.groups - 1:
                j += 1  # or too early
            else:
                break
        while j < self.groups:
            table, keys = self._group(j)
            stop = bisect.bisect_right(keys, value)
            yield from table.slice(i, stop - i).to_pylist()
            if stop < len(keys):
                return
            j, i = j + 1, 0
            if j < self.groups and self._group(j)[1][:1] < keys[-1:]:
                raise IndexDamaged(self.name, "is not sorted by its key")


def _key_statistics(md: pq.FileMetaData, column: int) -> tuple[list[Any], list[Any]] | None:
    """Each row group's min and max key from the footer statistics, where to start looking (they are not
    authenticated); None when a row group has none or they cannot be read (not UTF-8, say)."""
    lows, highs = [], []
    try:
        for j in range(md.num_row_groups):
            stats = md.row_group(j).column(column).statistics
            if stats is None or not stats.has_min_max:
                return None
            lows.append(stats.min)
            highs.append(stats.max)
    except Exception:  # pyarrow decodes them to Python values, and its errors are not typed for us
        return None
    return lows, highs


class Catalog:
    """The index objects of one stream: which to use for which segments, and what they hold."""

    def __init__(self, store: ObjectReader, journal_id: str, stream: str,
                 bound: Callable[[str, int, int], IndexRoot | None],
                 scan_segment: Callable[[int], dict[str, pa.Table]]) -> None:
        self.store = store
        self.journal_id = journal_id
        self.stream = stream
        self._bound = bound
        self._scan_segment = scan_segment
        self._files: dict[str, IndexFile] = {}
        self.damaged: dict[str, str] = {}  # name -> why, for objects that failed authentication

    def adopt(self, f: IndexFile) -> None:
        """An object opened (and checked against its signed root) before the catalog needed it."""
        self._files.setdefault(f.name, f)

    def drop_cached_rows(self) -> None:
        """Forget the row groups read so far, keeping the opened objects (their footers, checked): the next
        lookups fetch the rows they need, as lookups of keys not read before do."""
        for f in self._files.values():
            f._groups.clear()

    def cover(self, kind: str, segments: int) -> tuple[list[IndexObject], list[int]]:
        """Index objects with signed roots covering segments 0..segments-1 (at most two per octal digit of
        the count, build.cover; where one is not signed or is damaged, the objects it merged, down to single
        segments), and the segments none covers. The objects are named by the manifests' index lines
        (FORMAT.md 11a): nothing is listed."""

        def usable(first: int, last: int) -> bool:
            name = layout.index_object(self.stream, kind, first, last)
            return name not in self.damaged and self._bound(kind, first, last) is not None

        chosen: list[IndexObject] = []
        missing: list[int] = []
        for first, last in build.cover(segments):
            self._resolve(kind, first, last, usable, chosen, missing)
        if missing:
            log.info("stream %s: %d segment(s) have no usable %s index object; reading them directly "
                     "(`wormjournal reindex` writes the missing ones)", self.stream, len(missing), kind)
        return chosen, missing

    def _resolve(self, kind: str, first: int, last: int, usable: Callable[[int, int], bool],
                 chosen: list[IndexObject], missing: list[int]) -> None:
        if usable(first, last):
            chosen.append(IndexObject(layout.index_object(self.stream, kind, first, last), first, last))
        elif first == last:
            missing.append(first)
        else:  # what it merged covers the same segments (a store written before runs of 2, 4 and 6 blocks: those)
            for a, b in build.run_inputs(first, last):
                self._resolve(kind, a, b, usable, chosen, missing)

    def _file(self, kind: str, obj: IndexObject) -> IndexFile:
        f = self._files.get(obj.name)
        if f is None:
            root = self._bound(kind, obj.first, obj.last)
            assert root is not None  # cover() chose it for its root
            f = self._files[obj.name] = IndexFile(self.store, obj, kind, root, self.journal_id, self.stream)
        return f

    def lookup(self, kind: str, segments: int, value: Any = None) -> pa.Table:
        """Authenticated rows of the ``kind`` tables of segments 0..segments-1 whose key is ``value`` (all of
        them, proven), or every row with None. For ``events``, ``value`` is an event id and the rows are those
        of its fingerprint (build.fingerprint): other ids may share it.

        Raises IndexDamaged for an object that fails its checks; it is then left out of later
        lookups, so calling again reads around it.
        """
        objects, missing = self.cover(kind, segments)
        parts: list[pa.Table] = []
        for obj in objects:
            try:
                f = self._file(kind, obj)
                if value is None:
                    parts.append(build.current_rows(kind, f.format, f.all()))
                else:
                    parts.append(build.current_rows(kind, f.format, f.find(_key_value(kind, f.format, value))))
            except IndexDamaged as e:
                self.damaged[obj.name] = str(e)
                self._files.pop(obj.name, None)
                log.warning("%s", e)
                raise
        for segment in missing:
            table = self._scan_segment(segment)[kind]
            parts.append(table if value is None else _matching(table, build.KEY[kind],
                                                               _key_value(kind, build.INDEX_FORMAT, value)))
        return _concat(kind, parts)

    def first_rows(self, kind: str, segments: int, value: Any, order: Callable[[dict[str, Any]], Any],
                   count: int | None, group: str) -> list[dict[str, Any]] | None:
        """The rows with key ``value`` of the objects covering segments 0..segments-1 (each object's sorted by
        ``order`` after the key), merged in that order, until ``count`` distinct values of column ``group``
        are complete (all of them with None): the first rows of the key in each object are all that is read.
        None when a segment has no usable object (the caller reads another way). Raises IndexDamaged for an
        object that fails its checks or is not in that order; it is then left out of later lookups."""
        objects, missing = self.cover(kind, segments)
        if missing:
            return None

        def checked(f: IndexFile) -> Iterator[dict[str, Any]]:
            last = None
            for row in f.rows_from(value):
                here = order(row)
                if last is not None and here < last:
                    raise IndexDamaged(f.name, f"its {kind} rows are not in order")
                last = here
                yield row

        out: list[dict[str, Any]] = []
        seen: list[Any] = []
        try:
            for row in heapq.merge(*(checked(self._file(kind, obj)) for obj in objects), key=order):
                if not seen or seen[-1] != row[group]:
                    if count is not None and len(seen) == count:
                        break
                    seen.append(row[group])
                out.append(row)
        except IndexDamaged as e:
            self.damaged[e.name] = str(e)
            self._files.pop(e.name, None)
            log.warning("%s", e)
            raise
        return out

    def claims(self, kind: str, segments: int, value: Any) -> pa.Table:
        """What the index objects say about ``value``, read without authentication: what a reader
        that trusted the objects at the names the manifests sign would see. Used only to tell how a
        damaged object would mislead."""
        parts: list[pa.Table] = []

        def read(first: int, last: int) -> bool:
            if self._bound(kind, first, last) is None:
                return False
            try:
                pf = pq.ParquetFile(ObjectFile(self.store, layout.index_object(self.stream, kind, first, last)))
                meta = pf.metadata.metadata or {}
                fmt = meta.get(b"wormjournal.index", b"").decode()
                if (meta.get(b"wormjournal.journal", b"").decode() != self.journal_id
                        or meta.get(b"wormjournal.kind") != kind.encode()
                        or meta.get(b"wormjournal.first_segment") != str(first).encode()
                        or meta.get(b"wormjournal.last_segment") != str(last).encode()):
                    return False
                table = pf.read().replace_schema_metadata(None)
                if table.schema != (build.EVENTS_SCHEMA_2 if kind == "events" and fmt == "2" else build.SCHEMAS[kind]):
                    return False  # not this kind's rows: such a reader would have read what it merged
                parts.append(build.current_rows(kind, fmt, _matching(table, table.schema.names[0],
                                                                      _key_value(kind, fmt, value))))
                return True
            except Exception:  # missing or unreadable: such a reader would have read what it merged
                return False

        scanned: list[int] = []
        for first, last in build.cover(segments):
            self._resolve(kind, first, last, read, [], scanned)
        for segment in scanned:
            parts.append(_matching(self._scan_segment(segment)[kind], build.KEY[kind],
                                   _key_value(kind, build.INDEX_FORMAT, value)))
        return _concat(kind, parts)


def _key_value(kind: str, fmt: str, value: Any) -> Any:
    """What an object of index format ``fmt`` is sorted by for the lookup ``value``: an event id's
    fingerprint in format 3's events rows, the value itself otherwise."""
    return build.fingerprint(value) if kind == "events" and fmt != "2" else value


def _matching(table: pa.Table, column: str, value: Any) -> pa.Table:
    if value is None:
        return table
    return table.filter(pc.equal(table.column(column), pa.scalar(value, table.schema.field(column).type)))


def _concat(kind: str, parts: list[pa.Table]) -> pa.Table:
    schema = build.SCHEMAS[kind]
    parts = [p if p.schema == schema else p.replace_schema_metadata(None).cast(schema) for p in parts if p.num_rows]
    return pa.concat_tables(parts) if parts else schema.empty_table()
