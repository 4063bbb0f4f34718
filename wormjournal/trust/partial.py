"""Authenticated partial reads of a sealed segment: a few row groups, not the file.

Each row group is a complete subtree of the segment's Merkle tree (FORMAT.md,
section 5). To trust rows of some row groups, their subtree roots are recomputed
from the rows, the footer supplies the other roots, and the root they make must
be the signed ``merkle_root`` of the manifest. Then each wanted row's event hash
is recomputed from its fields: a row that passes is exactly the event that was sealed.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    leaf_hashes,
    parquet_schema_problem,
    row_hashes,
)
from ..storage.base import ObjectReader
from ..storage.objectfile import ObjectFile


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
            self._footer = pages.read_footer(manifest.object_size, self._fetch)
            self._pf = pq.ParquetFile(self.file, metadata=pages.file_metadata(self._footer))
            meta = {k.decode(): v.decode() for k, v in (self._pf.schema_arrow.metadata or {}).items()}
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
        if any(meta.get(k) != v for k, v in expected.items()) or parquet_schema_problem(self._pf.schema) is not None:
            raise IntegrityError(f"{where}: its metadata or schema is not this journal's segment")
        md = self._pf.metadata
        problem = block_layout_problem([md.row_group(j).num_rows for j in range(md.num_row_groups)], block, len(roots),
                                       manifest.events)
        if problem is not None:
            raise IntegrityError(f"{where}: its row groups are not its Merkle blocks: {problem}")
        self.block = block
        self._roots = roots
        self.page_rows = self._page_mode(meta)
        self._layout: pages.PageLayout | None = None

    def _fetch(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return [self._store.get_range(self.manifest.object, start, length) for start, length in ranges]

    def _page_mode(self, meta: dict[str, str]) -> int:
        """The rows of each page when the footer's page roots make the signed root (FORMAT.md 5, "Pages"),
        else 0: rows are then read by whole row groups, as a segment written without page roots is."""
        try:
            rows = int(meta.get(PAGE_ROWS_KEY, "0"))
            roots = decode_block_roots(meta.get(PAGE_ROOTS_KEY, ""))
        except ValueError:
            return 0
        events = self.manifest.events
        if (rows <= 0 or rows & (rows - 1) or self.block % rows or len(roots) != -(-events // rows)
                or merkle.block_roots(roots, self.block // rows) != self._roots
                or merkle.root_from_leaf_hashes(roots) != self.manifest.merkle_root):
            return 0  # read by row groups, which are blocks checked against the same root (and fail there)
        self._page_roots = roots
        return rows

    @property
    def groups(self) -> int:
        """Its row groups, each one Merkle block."""
        return len(self._roots)

    def read_rows(self, start: int, count: int, columns: list[str] | None = None) -> pa.Table:
        """Rows ``start .. start+count-1`` (storage order), each authenticated; raises IntegrityError."""
        if count <= 0:
            return SCHEMA.empty_table()
        if start < 0 or start + count > self.manifest.events:
            raise IntegrityError(
                f"segment {self.manifest.segment} has {self.manifest.events} rows, "
                f"not rows {start}..{start + count - 1}"
            )
        if self.page_rows:
            try:
                return self._read_pages(start, count, columns)
            except PageLayoutError:
                self.page_rows = 0  # not laid out in pages after all: whole row groups, authenticated the same
        groups = list(range(start // self.block, (start + count - 1) // self.block + 1))
        try:
            table = as_segment_table(self._pf.read_row_groups(groups))
        except JournalError:
            raise
        except Exception as e:  # torn row groups: pyarrow's errors are not typed for us
            raise IntegrityError(f"segment {self.manifest.segment}: its row groups {groups} cannot be read: {e}") from e
        roots = list(self._roots)
        offset = 0
        for j in groups:
            n = self._pf.metadata.row_group(j).num_rows
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
        computed = row_hashes(rows)
        stored = rows.column("hash").to_pylist()
        for seq, a, b in zip(rows.column("seq").to_pylist(), computed, stored, strict=True):
            if a != b:
                raise IntegrityError(f"event seq {seq}: its fields do not hash to its stored hash (altered)", seq=seq)
        return rows if columns is None else rows.select(columns)

    def _read_pages(self, start: int, count: int, columns: list[str] | None) -> pa.Table:
        """Rows ``start .. start+count-1`` from the pages that hold them: every row of those pages is hashed
        and each page must give its page root (which the footer's page roots, checked against the signed
        Merkle root at open, vouch for). Raises PageLayoutError when the pages cannot be read on their own."""
        r = self.page_rows
        if self._layout is None:
            self._layout = pages.PageLayout(self._footer, self._fetch)
        layout = self._layout
        per = self.block // r
        p0, p1 = start // r, (start + count - 1) // r
        wanted = []
        for j in range(p0 // per, p1 // per + 1):
            a, b = max(p0, j * per), min(p1, (j + 1) * per - 1)
            wanted.append((j, a, b, layout.page_span(j, (a - j * per) * r, r, b - a + 1)))
        ranges = [rng for *_, spans in wanted for d0, dn, q0, qn in spans for rng in ((d0, dn), (q0, qn))]
        fetched = pages.coalesce(ranges, getattr(self._store, "range_gap", pages.DEFAULT_GAP))
        piece = pages.slicer(fetched, self._fetch(fetched))
        events = self.manifest.events
        parts = [(j, min((b + 1) * r, events) - a * r, [(piece(d0, dn), piece(q0, qn)) for d0, dn, q0, qn in spans])
                 for j, a, b, spans in wanted]
        try:
            table = as_segment_table(pq.ParquetFile(pa.BufferReader(layout.assemble(parts))).read())
        except JournalError:
            raise
        except Exception as e:  # damaged pages: pyarrow's errors are not typed for us
            raise IntegrityError(f"segment {self.manifest.segment}: its pages holding rows {start}.. cannot be "
                                 f"read: {e}") from e
        expected = min((p1 + 1) * r, events) - p0 * r
        # The stored hashes are authenticated by the page roots, then each wanted row by its stored hash: an
        # altered row is named by its seq, and spoils no read of its neighbours on the same page.
        roots = merkle.block_roots(leaf_hashes(table.column("hash")), r) if table.num_rows == expected else []
        rows = table.slice(start - p0 * r, count)
        if roots != self._page_roots[p0 : p1 + 1]:
            seqs = rows.column("seq").to_pylist() if table.num_rows == expected else []
            raise IntegrityError(
                f"segment {self.manifest.segment}: the pages holding seq {min(seqs) if seqs else '?'}.. do not "
                "match the signed Merkle root (rows altered, reordered, or removed)",
            )
        stored = rows.column("hash").to_pylist()
        for n, (have, want) in enumerate(zip(row_hashes(rows), stored, strict=True)):
            if have != want:
                seq = rows.column("seq")[n].as_py()
                raise IntegrityError(f"event seq {seq}: its fields do not hash to its stored hash (altered)", seq=seq)
        return rows if columns is None else rows.select(columns)
