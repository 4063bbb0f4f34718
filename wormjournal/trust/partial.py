"""Authenticated partial reads of a sealed segment: a few row groups, not the file.

Each row group is a complete subtree of the segment's Merkle tree (FORMAT.md,
section 5). To trust rows of some row groups, their subtree roots are recomputed
from the rows, the footer supplies the other roots, and the root they make must
be the signed ``merkle_root`` of the manifest. Then each wanted row's event hash
is recomputed from its fields: a row that passes is exactly the event that was sealed.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import IntegrityError, JournalError, NotFoundError, PageLayoutError
from ..segments import merkle, pages
from ..segments.manifest import Manifest
from ..segments.table import (
    BLOCK_ROOTS_KEY,
    BLOCK_ROWS_KEY,
    FORMAT_VERSION,
    PAGE_ROOTS_KEY,
    PAGE_ROWS_KEY,
    SCHEMA,
    as_segment_table,
    block_layout_problem,
    decode_block_roots,
    leaf_hashes_of,
    packed_hashes,
    parquet_fragment,
    parquet_schema_problem,
    row_hashes,
)
from ..storage.base import ObjectReader, get_ranges
from ..storage.objectfile import ObjectFile

_SCHEMA_PROBLEMS: dict[bytes, str | None] = {}  # by footer head (its bytes hold the schema): segments share a few


def _schema_problem(head: bytes, footer: bytes) -> str | None:
    """parquet_schema_problem of the schema of a footer whose head (pages.PageLayout.head_key) is ``head``: decoded
    by pyarrow once for all the footers of one head."""
    if head not in _SCHEMA_PROBLEMS:
        if len(_SCHEMA_PROBLEMS) >= 64:
            _SCHEMA_PROBLEMS.clear()
        _SCHEMA_PROBLEMS[head] = parquet_schema_problem(pages.file_metadata(footer).schema)
    return _SCHEMA_PROBLEMS[head]


class SegmentFile:
    """One sealed segment, opened by its footer; rows are read and checked on demand.

    Raises IntegrityError when the footer does not fit the signed manifest.
    """

    def __init__(self, store: ObjectReader, manifest: Manifest, journal_id: str) -> None:
        self.manifest = manifest
        self._store = store
        self.file = ObjectFile(store, manifest.object, manifest.object_size)
        where = f"segment {manifest.segment} ({manifest.object})"
        try:
            footer, at, held = pages.read_footer(manifest.object_size, self._fetch)
            self._footer: bytes | None = footer  # kept by the layout, or here without one
            try:  # the footer's layout, metadata and schema without pyarrow (C: no object per field)
                self._layout: pages.PageLayout | None = pages.PageLayout(footer, self._fetch, 0, (at, held),
                                                                         size=manifest.object_size)
            except PageLayoutError:  # not one pages can be read from: whole row groups, by pyarrow
                self._layout = None
            if self._layout is not None:
                self._footer = None  # a reader holds hundreds of segments; the layout reads it again if need be
                meta, self._layout.metadata = self._layout.metadata, {}
                schema_problem = _schema_problem(self._layout.head_key, footer)
                sizes = [self._layout.group_rows(j) for j in range(self._layout.groups)]
            else:
                pf = self._parquet
                meta = {k.decode(): v.decode() for k, v in (pf.schema_arrow.metadata or {}).items()}
                schema_problem = parquet_schema_problem(pf.schema)
                sizes = [pf.metadata.row_group(j).num_rows for j in range(pf.metadata.num_row_groups)]
            block = int(meta[BLOCK_ROWS_KEY])
            roots = decode_block_roots(meta[BLOCK_ROOTS_KEY])
        except NotFoundError as e:  # its manifest signs it: a missing object is a broken promise, not absence
            raise IntegrityError(f"{where} is missing (its manifest signs it)") from e
        except PageLayoutError as e:
            raise IntegrityError(f"{where} cannot be read as a wormjournal segment: {e}") from e
        except JournalError:
            raise
        except Exception as e:  # a torn or foreign file: pyarrow's errors are not typed for us
            raise IntegrityError(f"{where} cannot be read as a wormjournal segment: {e}") from e
        expected = {
            "wormjournal.format": FORMAT_VERSION,
            "wormjournal.journal": journal_id,
            "wormjournal.stream": manifest.stream,
            "wormjournal.segment": str(manifest.segment),
        }
        if any(meta.get(k) != v for k, v in expected.items()) or schema_problem is not None:
            raise IntegrityError(f"{where}: its metadata or schema is not this journal's segment")
        problem = block_layout_problem(sizes, block, len(roots), manifest.events)
        if problem is not None:
            raise IntegrityError(f"{where}: its row groups are not its Merkle blocks: {problem}")
        self.block = block
        self._roots = roots
        self.page_rows = self._page_mode(meta) if self._layout is not None else 0
        if self._layout is not None:
            self._layout.page_rows = self.page_rows

    @functools.cached_property
    def _parquet(self) -> pq.ParquetFile:
        """pyarrow's reader of the object, its footer already read (for whole row groups)."""
        footer = self._footer if self._footer is not None else self._layout.footer() if self._layout else b""
        return pq.ParquetFile(self.file, metadata=pages.file_metadata(footer))

    def _fetch(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return get_ranges(self._store, self.manifest.object, ranges)

    def _page_mode(self, meta: dict[str, str]) -> int:
        """The rows of each page when the footer's page roots make the signed root (FORMAT.md 5, "Pages"),
        else 0: rows are then read by whole row groups, as a segment written without page roots is."""
        try:
            rows = int(meta.get(PAGE_ROWS_KEY, "0"))
            text = meta.get(PAGE_ROOTS_KEY, "")
            roots = bytes.fromhex(text) if len(text) % 64 == 0 else b""  # packed: a C call each, no list
        except ValueError:
            return 0
        events = self.manifest.events
        if (rows <= 0 or rows & (rows - 1) or self.block % rows or len(roots) != 32 * -(-events // rows)
                or merkle.root_from_leaf_hashes(self._roots) != self.manifest.merkle_root):
            return 0  # read by row groups, which are blocks checked against the same root (and fail there)
        # Each row group's page roots are checked against its block root when a read first needs them
        # (_check_group_pages): a segment opens without hashing them all, a lookup reads one or two groups.
        self._page_roots = roots
        self._checked_groups: set[int] = set()
        return rows

    def _check_group_pages(self, j: int) -> None:
        """Row group ``j``'s page roots must make its block root (which the signed root covers); raises
        PageLayoutError otherwise: the segment is then read by row groups, checked against the same root."""
        if j in self._checked_groups:
            return
        per = self.block // self.page_rows
        if merkle.block_roots_of(self._page_roots[32 * per * j : 32 * per * (j + 1)], per) != self._roots[j]:
            raise PageLayoutError(f"row group {j}: its page roots do not make its block root")
        self._checked_groups.add(j)

    @property
    def groups(self) -> int:
        """Its row groups, each one Merkle block."""
        return len(self._roots)

    def read_rows(self, start: int, count: int, columns: list[str] | None = None) -> pa.Table:
        """Rows ``start .. start+count-1`` (storage order), each authenticated; raises IntegrityError."""
        result, (entry,) = read_many([(self, start, count)])
        if isinstance(entry, IntegrityError):
            raise entry
        return result if columns is None else result.select(columns)

    def _check_range(self, start: int, count: int) -> None:
        if start < 0 or count < 0 or start + count > self.manifest.events:
            raise IntegrityError(
                f"segment {self.manifest.segment} has {self.manifest.events} rows, "
                f"not rows {start}..{start + count - 1}"
            )

    def _read_groups(self, start: int, count: int) -> pa.Table:
        """Rows ``start .. start+count-1`` from the whole row groups that hold them, authenticated against
        the block roots (a segment without usable page roots)."""
        groups = list(range(start // self.block, (start + count - 1) // self.block + 1))
        try:
            table = as_segment_table(self._parquet.read_row_groups(groups))
        except JournalError:
            raise
        except Exception as e:  # torn row groups: pyarrow's errors are not typed for us
            raise IntegrityError(f"segment {self.manifest.segment}: its row groups {groups} cannot be read: {e}") from e
        roots = list(self._roots)
        offset = 0
        for j in groups:
            n = self._parquet.metadata.row_group(j).num_rows
            hashes = table.column("hash").slice(offset, n).to_pylist()
            roots[j] = merkle.root_from_leaf_hashes([merkle.leaf_hash(h or b"") for h in hashes])
            offset += n
        rows = table.slice(start - groups[0] * self.block, count)
        if merkle.root_from_leaf_hashes(roots) != self.manifest.merkle_root:
            seqs = rows.column("seq").to_pylist()
            # No one event to name: the caller knows which of these rows it wanted.
            raise IntegrityError(
                f"segment {self.manifest.segment}: the row groups holding seq {min(seqs) if seqs else '?'}.. do not "
                "match the signed Merkle root (rows altered, reordered, or removed)",
            )
        _check_hashes(rows, row_hashes(rows))
        return rows

    def _plan_pages(self, start: int, count: int) -> _PagePlan:
        """The pages holding rows ``start .. start+count-1``, fetched (the byte ranges of all columns and row
        groups coalesced). Raises PageLayoutError when the pages cannot be read on their own."""
        r = self.page_rows
        layout = self._layout
        assert layout is not None  # page_rows is 0 without one
        per = self.block // r
        p0, p1 = start // r, (start + count - 1) // r
        groups = [(j, max(p0, j * per), min(p1, (j + 1) * per - 1)) for j in range(p0 // per, p1 // per + 1)]
        for j, _, _ in groups:
            self._check_group_pages(j)
        events = self.manifest.events
        gap = getattr(self._store, "range_gap", pages.DEFAULT_GAP)
        each = [layout.data_ranges(j, a - j * per, b - j * per) for j, a, b in groups]
        ranges = [rng for part in each if part is not None for rng in part]
        if None not in each and pages.apart(ranges, gap):
            # No dictionary pages and each column's pages a request of its own (a local disk): the bytes as read.
            data = iter(self._fetch(ranges))
            parts = [(j, min((b + 1) * r, events) - a * r, [(b"", next(data)) for _ in part or ()])
                     for (j, a, b), part in zip(groups, each, strict=True)]
        else:
            wanted = [(j, a, b, layout.page_span(j, a - j * per, b - j * per)) for j, a, b in groups]
            ranges = [rng for *_, spans in wanted for d0, dn, q0, qn in spans for rng in ((d0, dn), (q0, qn))]
            fetched = pages.coalesce(ranges, gap)
            piece = pages.slicer(fetched, self._fetch(fetched))
            parts = [(j, min((b + 1) * r, events) - a * r,
                      [(piece(d0, dn), piece(q0, qn)) for d0, dn, q0, qn in spans]) for j, a, b, spans in wanted]
        return _PagePlan(self, start, count, p0, p1, layout, parts, [layout.plain(j) for j, *_ in groups])

    def _check_pages(self, plan: _PagePlan, table: pa.Table, leaves: bytes) -> pa.Table:
        """The wanted rows of ``plan`` out of ``table`` (the rows of its pages) once each page gives its page
        root: that authenticates the stored hashes; the caller then checks each wanted row against its stored
        hash, so an altered row is named by its seq and spoils no read of its neighbours on the page."""
        r = self.page_rows
        whole = table.num_rows == plan.rows
        rows = table.slice(plan.start - plan.p0 * r, plan.count)
        if not whole or merkle.block_roots_of(leaves, r) != self._page_roots[32 * plan.p0 : 32 * (plan.p1 + 1)]:
            seqs = rows.column("seq").to_pylist() if whole else []
            raise IntegrityError(
                f"segment {self.manifest.segment}: the pages holding seq {min(seqs) if seqs else '?'}.. do not "
                "match the signed Merkle root (rows altered, reordered, or removed)",
            )
        return rows


@dataclasses.dataclass
class _PagePlan:
    """The fetched pages of one read of a segment: for each row group, its number, its rows read and each
    column's (dictionary page, data pages), and each column's (codec, type)."""

    file: SegmentFile
    start: int
    count: int
    p0: int
    p1: int
    layout: pages.PageLayout
    parts: list[tuple[int, int, list[tuple[bytes, bytes]]]]
    plain: list[tuple[tuple[int, int], ...]]  # per part, each column's (codec, type): PageLayout.plain

    @functools.cached_property
    def rows(self) -> int:
        return sum(rows for _, rows, _ in self.parts)


def _check_hashes(rows: pa.Table, computed: Sequence[bytes]) -> None:
    stored = rows.column("hash").to_pylist()
    for n, (have, want) in enumerate(zip(computed, stored, strict=True)):
        if have != want:
            seq = rows.column("seq")[n].as_py()
            raise IntegrityError(f"event seq {seq}: its fields do not hash to its stored hash (altered)", seq=seq)


def _decode(plans: Sequence[_PagePlan]) -> pa.Table:
    """The rows of the plans' pages, in order: each column's pages one after another, decoded by the C extension
    as one column chunk; or (pages it does not decode) one Parquet file of all of them, read by pyarrow."""
    kinds = plans[0].plain[0]
    if pages._native is not None and all(p == kinds for plan in plans for p in plan.plain) and all(
            codec != pages._NO_CODEC for codec, _ in kinds):
        # Each column's pages of every part, one column after another (parts alike in kinds have as many columns).
        pieces = list(zip(*([data for _, data in columns] for plan in plans for _, _, columns in plan.parts),
                          strict=True))
        rows = sum(plan.rows for plan in plans)
        chunks, at = [], 0
        for column, (codec, ptype) in zip(pieces, kinds, strict=True):
            size = sum(map(len, column))
            chunks.append((at, at + size, codec, ptype))
            at += size
        table = pages.decode_plain(b"".join(itertools.chain.from_iterable(pieces)), SCHEMA, [(rows, chunks)])
        if table is not None:
            return table
    data = pages.assemble(plans[0].layout.head, [(plan.layout.kept(j), rows, columns) for plan in plans
                                                 for j, rows, columns in plan.parts])
    try:
        table = pages.decode_plain(data, SCHEMA, pages.chunks_of_footer(pages.footer_of(data)))
    except (PageLayoutError, KeyError, TypeError, IndexError):  # not ours to judge: pyarrow's read decides
        table = None
    return table if table is not None else as_segment_table(parquet_fragment(data).to_table(use_threads=False))


# The good rows of all requests, in order, and each request's number of rows or its error.
Reads = tuple[pa.Table, list["int | IntegrityError"]]


def read_many(requests: Sequence[tuple[SegmentFile, int, int]]) -> Reads:
    """Rows ``(start, count)`` of several segments (storage order), each authenticated: the rows of every request
    that passes, one after another in request order, and for each request its number of rows or the
    IntegrityError that refuses it. The pages of every segment laid out in pages are decoded by one Parquet read
    and hashed in one call per kind of hash; other segments are read by row groups."""
    out: list[Reads | IntegrityError | None] = [None] * len(requests)
    plans: dict[bytes, list[tuple[int, _PagePlan]]] = {}  # by footer head: segments of one schema decode as one
    for i, (f, start, count) in enumerate(requests):
        try:
            f._check_range(start, count)
            if not count:
                out[i] = (SCHEMA.empty_table(), [0])
                continue
            if f.page_rows:
                try:
                    plan = f._plan_pages(start, count)
                    plans.setdefault(plan.layout.head_key, []).append((i, plan))
                    continue
                except PageLayoutError:
                    f.page_rows = 0  # not laid out in pages after all: whole row groups, authenticated the same
            rows = f._read_groups(start, count)
            out[i] = (rows, [rows.num_rows])
        except IntegrityError as e:
            out[i] = e
    groups = []
    for group in plans.values():
        try:
            result = _checked([plan for _, plan in group], _decode([plan for _, plan in group]))
        except JournalError:
            raise
        except Exception:  # pyarrow's errors are not typed for us: one by one, to tell whose pages are damaged
            tables: list[pa.Table] = []
            entries: list[int | IntegrityError] = []
            for _, plan in group:
                try:
                    table, (entry,) = _checked([plan], _decode([plan]))
                    tables.append(table)
                except Exception as e:
                    entry = IntegrityError(f"segment {plan.file.manifest.segment}: its pages holding rows "
                                           f"{plan.start}.. cannot be read: {e}")
                entries.append(entry)
            result = (pa.concat_tables(tables) if tables else SCHEMA.empty_table(), entries)
        if len(group) == len(requests):  # every request, in order: as it is
            return result
        groups.append(([i for i, _ in group], result))
    for indices, (table, entries) in groups:
        at = 0
        for i, entry in zip(indices, entries, strict=True):
            if isinstance(entry, IntegrityError):
                out[i] = entry
            else:
                out[i] = (table.slice(at, entry), [entry])
                at += entry
    parts = [x[0] for x in out if x is not None and not isinstance(x, IntegrityError)]
    return (pa.concat_tables(parts) if parts else SCHEMA.empty_table(),
            [x if isinstance(x, IntegrityError) else x[1][0] for x in out if x is not None])


def _checked(plans: Sequence[_PagePlan], table: pa.Table) -> Reads:
    """Each plan's wanted rows out of the rows of all their pages (``table``, in plan order), authenticated, as
    :func:`read_many` gives them; leaf hashes and event hashes computed in one call each."""
    leaves = leaf_hashes_of(table.column("hash"))
    good = _all_good(plans, table, leaves)
    if good is not None:
        return good, [plan.count for plan in plans]
    results: list[pa.Table | IntegrityError] = []
    offset = 0
    for plan in plans:
        try:
            results.append(plan.file._check_pages(plan, table.slice(offset, plan.rows),
                                                  leaves[32 * offset : 32 * (offset + plan.rows)]))
        except IntegrityError as e:
            results.append(e)
        offset += plan.rows
    good_rows = [r for r in results if not isinstance(r, IntegrityError)]
    computed = row_hashes(pa.concat_tables(good_rows).combine_chunks()) if good_rows else []
    at = 0
    for k, rows in enumerate(results):
        if isinstance(rows, IntegrityError):
            continue
        try:
            _check_hashes(rows, computed[at : at + rows.num_rows])
        except IntegrityError as e:
            results[k] = e
        at += rows.num_rows
    kept = [r for r in results if not isinstance(r, IntegrityError)]
    return (pa.concat_tables(kept) if kept else SCHEMA.empty_table(),
            [r if isinstance(r, IntegrityError) else r.num_rows for r in results])


def _all_good(plans: Sequence[_PagePlan], table: pa.Table, leaves: bytes) -> pa.Table | None:
    """The wanted rows of every plan, one after another, when every page gives its page root and every wanted row
    its stored hash, as reads nearly always find: one event-hash call and one comparison for all the plans' rows.
    None when any does not: the caller then checks plan by plan, to name what fails."""
    wanted = []
    offset = 0
    for plan in plans:
        r = plan.file.page_rows
        page_roots = merkle.block_roots_of(leaves[32 * offset : 32 * (offset + plan.rows)], r)
        if page_roots != plan.file._page_roots[32 * plan.p0 : 32 * (plan.p1 + 1)]:
            return None
        first = offset + plan.start - plan.p0 * r
        wanted.append(range(first, first + plan.count))
        offset += plan.rows
    if offset != table.num_rows:
        return None
    rows = table.take(np.fromiter((i for w in wanted for i in w), dtype=np.int64))
    stored = packed_hashes(rows.column("hash"))
    if stored is None or b"".join(row_hashes(rows)) != stored:  # rows is one chunk: one C call
        return None
    return rows
