"""Authenticated partial reads of a sealed segment: a few row groups, not the file.

Each row group is a complete subtree of the segment's Merkle tree (FORMAT.md,
section 5). To trust rows of some row groups, their subtree roots are recomputed
from the rows, the footer supplies the other roots, and the root they make must
be the signed ``merkle_root`` of the manifest. Then each wanted row's event hash
is recomputed from its fields: a row that passes is exactly the event that was sealed.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import IntegrityError, JournalError, NotFoundError
from ..segments import merkle
from ..segments.manifest import Manifest
from ..segments.table import (
    BLOCK_ROOTS_KEY,
    BLOCK_ROWS_KEY,
    FORMAT_VERSION,
    SCHEMA,
    as_segment_table,
    block_layout_problem,
    decode_block_roots,
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
        self.file = ObjectFile(store, manifest.object, manifest.object_size)
        where = f"segment {manifest.segment} ({manifest.object})"
        try:
            self._pf = pq.ParquetFile(self.file)
            meta = {k.decode(): v.decode() for k, v in (self._pf.schema_arrow.metadata or {}).items()}
            block = int(meta[BLOCK_ROWS_KEY])
            roots = decode_block_roots(meta[BLOCK_ROOTS_KEY])
        except NotFoundError as e:  # its manifest signs it: a missing object is a broken promise, not absence
            raise IntegrityError(f"{where} is missing (its manifest signs it)") from e
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
