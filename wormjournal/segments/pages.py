"""A few pages of a Parquet object, fetched by byte range and read as a Parquet file of their own.

A segment's pages hold ``page_rows`` rows each in every column (FORMAT.md 5, "Pages"),
so page ``p`` of every column holds the same rows. The footer says where each column
chunk starts and the offset index (Parquet's page index) where each of its pages does.
To read pages ``p0..p1`` of a row group, this module fetches, for each column, its
dictionary page (if any) and those data pages, then writes them one after another
behind a footer of its own that describes them as one row group: pyarrow decodes
that small file as it would the whole one. Several row groups, even of several
objects with the same schema, become row groups of the one file.

Nothing here is trusted: the rows that come out are authenticated by their hashes
against the page roots the segment's footer carries, which make its signed Merkle root.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow._parquet as _pq
import pyarrow.parquet as pq

from ..errors import PageLayoutError
from . import thrift
from .thrift import BINARY, I64, LIST, STRUCT, Struct

MAGIC = b"PAR1"
TAIL = 64 << 10  # the first read of a footer: most footers fit, so one request opens an object
# Byte ranges this close are fetched as one (a store may say otherwise: its `range_gap`): on a local disk a
# read costs little, so gaps are not worth reading; over HTTP each request is a round trip.
DEFAULT_GAP = 4 << 10

# Thrift field ids of parquet.thrift
_FMD_SCHEMA, _FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KV, _FMD_CREATED_BY, _FMD_COLUMN_ORDERS = 2, 3, 4, 5, 6, 7
_RG_COLUMNS, _RG_TOTAL_BYTES, _RG_NUM_ROWS, _RG_FILE_OFFSET, _RG_TOTAL_COMPRESSED, _RG_ORDINAL = 1, 2, 3, 5, 6, 7
_CC_FILE_OFFSET, _CC_META, _CC_OI_OFFSET, _CC_OI_LENGTH = 2, 3, 4, 5
_MD_NUM_VALUES, _MD_TOTAL_UNCOMPRESSED, _MD_TOTAL_COMPRESSED = 5, 6, 7
_MD_DATA_PAGE_OFFSET, _MD_INDEX_PAGE_OFFSET, _MD_DICT_PAGE_OFFSET = 9, 10, 11
_MD_KEEP = (1, 2, 3, 4, 8, 13)  # type, encodings, path, codec, key-value metadata, encoding stats

Fetch = Callable[[Sequence[tuple[int, int]]], list[bytes]]  # byte ranges (offset, length) -> their bytes


def read_footer(size: int, fetch: Fetch) -> bytes:
    """The footer (FileMetaData, Thrift compact) of a Parquet object of ``size`` bytes; one request when it
    is within the last TAIL bytes. Raises PageLayoutError."""
    if size < 12:
        raise PageLayoutError("too short for Parquet")
    start = max(0, size - TAIL)
    (tail,) = fetch([(start, size - start)])
    if len(tail) != size - start or tail[-4:] != MAGIC:
        raise PageLayoutError("no Parquet footer")
    length = struct.unpack("<I", tail[-8:-4])[0]
    if length + 12 > size:
        raise PageLayoutError("footer length out of range")
    if length + 8 <= len(tail):
        return tail[len(tail) - 8 - length : -8]
    (footer,) = fetch([(size - 8 - length, length)])
    return footer


def file_metadata(footer: bytes) -> pq.FileMetaData:
    """pyarrow's metadata object from footer bytes (so that pyarrow does not read the footer again)."""
    return _pq._reconstruct_filemetadata(pa.py_buffer(footer))


@dataclasses.dataclass(frozen=True)
class ColumnPages:
    """Where one column chunk's pages are: the dictionary page's range (or None) and each data page's
    (offset, compressed size, first row in the row group)."""

    meta: Struct
    dictionary: tuple[int, int] | None
    pages: list[tuple[int, int, int]]


class PageLayout:
    """The footer of one Parquet object, decoded, and the offset indexes of its row groups (fetched when
    first needed). Raises PageLayoutError when the object has no offset index."""

    def __init__(self, footer: bytes, fetch: Fetch) -> None:
        try:
            self.fmd, _ = thrift.decode(footer)
            self._groups: list[Struct] = [g for g in self.fmd[_FMD_ROW_GROUPS][1][1]]
        except (PageLayoutError, KeyError, TypeError, IndexError) as e:
            raise PageLayoutError(f"footer cannot be decoded: {e}") from e
        self._fetch = fetch
        self._columns: dict[int, list[ColumnPages]] = {}
        self._head = _file_head(self.fmd)

    @property
    def row_groups(self) -> int:
        return len(self._groups)

    def group_rows(self, j: int) -> int:
        return int(self._groups[j][_RG_NUM_ROWS][1])

    def columns(self, j: int) -> list[ColumnPages]:
        """The pages of each column of row group ``j`` (one request for its offset indexes, then cached)."""
        cols = self._columns.get(j)
        if cols is not None:
            return cols
        try:
            chunks: list[Struct] = self._groups[j][_RG_COLUMNS][1][1]
            spans = [(c[_CC_OI_OFFSET][1], c[_CC_OI_LENGTH][1]) for c in chunks]
        except (KeyError, TypeError, IndexError) as e:
            raise PageLayoutError(f"row group {j} has no offset index") from e
        lo = min(o for o, _ in spans)
        hi = max(o + n for o, n in spans)
        if lo < 0 or hi - lo > 64 << 20:
            raise PageLayoutError(f"row group {j}: offset index out of range")
        (raw,) = self._fetch([(lo, hi - lo)])
        cols = []
        try:
            for chunk, (offset, length) in zip(chunks, spans, strict=True):
                index, _ = thrift.decode(raw, offset - lo, offset - lo + length)
                pages = [(loc[1][1], loc[2][1], loc[3][1]) for loc in index[1][1][1]]
                meta: Struct = chunk[_CC_META][1]
                d = meta.get(_MD_DICT_PAGE_OFFSET)
                dictionary = (d[1], pages[0][0] - d[1]) if d is not None and pages else None
                cols.append(ColumnPages(meta, dictionary, pages))
        except (PageLayoutError, KeyError, TypeError, IndexError) as e:
            raise PageLayoutError(f"row group {j}: offset index cannot be decoded: {e}") from e
        self._columns[j] = cols
        return cols

    def page_span(self, j: int, first_row: int, page_rows: int, pages: int) -> list[tuple[int, int, int, int]]:
        """For each column of row group ``j``: (offset, length) of its dictionary page (or (0, 0)) and of its
        ``pages`` data pages from row ``first_row`` (in the row group), each of ``page_rows`` rows (the last
        of the row group may hold fewer). Raises PageLayoutError unless the pages of every column are exactly so."""
        rows = self.group_rows(j)
        end_row = min(first_row + pages * page_rows, rows)
        out = []
        for col in self.columns(j):
            starts = [p[2] for p in col.pages]
            try:
                k = starts.index(first_row)
            except ValueError:
                raise PageLayoutError(f"row group {j}: no page starts at row {first_row}") from None
            chosen = col.pages[k : k + pages]
            expected = list(range(first_row, end_row, page_rows))
            if [p[2] for p in chosen] != expected or (k + pages < len(starts) and starts[k + pages] != end_row):
                raise PageLayoutError(f"row group {j}: pages are not {page_rows} rows each")
            first, last = chosen[0], chosen[-1]
            if any(a[0] + a[1] != b[0] for a, b in zip(chosen, chosen[1:], strict=False)):
                raise PageLayoutError(f"row group {j}: pages are not contiguous")
            d = col.dictionary or (0, 0)
            out.append((d[0], d[1], first[0], last[0] + last[1] - first[0]))
        return out

    def assemble(self, parts: Sequence[tuple[int, int, list[tuple[bytes, bytes]]]]) -> bytes:
        """A Parquet file whose row groups are ``parts``: (row group j of this object, its rows, and for each
        column the bytes of its dictionary page (b"" for none) and of its data pages)."""
        return assemble(self._head, [(self.kept(j), rows, data) for j, rows, data in parts])

    def kept(self, j: int) -> list[Struct]:
        """The fields of row group ``j``'s column metadata that an assembled file keeps, encoded once."""
        cols = self.columns(j)
        if not hasattr(cols[0], "kept"):
            for col in cols:
                object.__setattr__(col, "kept", {k: (t, thrift.Raw(t, v)) for k, (t, v) in col.meta.items()
                                                  if k in _MD_KEEP})
        return [col.kept for col in cols]  # type: ignore[attr-defined]


def _file_head(fmd: Struct) -> Struct:
    """The fields of a footer that every assembled file repeats, encoded once: version, schema, the Arrow
    schema (types as written; the rest of the key-value metadata is the original file's business)."""
    out: Struct = {k: (t, thrift.Raw(t, v)) for k, (t, v) in fmd.items()
                   if k in (1, _FMD_SCHEMA, _FMD_CREATED_BY, _FMD_COLUMN_ORDERS)}
    kv = fmd.get(_FMD_KV)
    if kv is not None:
        arrow = [e for e in kv[1][1] if e.get(1, (BINARY, b""))[1] == b"ARROW:schema"]
        out[_FMD_KV] = (LIST, thrift.Raw(LIST, (STRUCT, arrow)))
    return out


def assemble(head: Struct, parts: Sequence[tuple[list[Struct], int, list[tuple[bytes, bytes]]]]) -> bytes:
    """The file of :meth:`PageLayout.assemble`: ``head`` from :func:`_file_head`, ``parts`` (the kept fields of
    the original column metadata, rows, pages)."""
    body = bytearray(MAGIC)
    groups = []
    total_rows = 0
    for ordinal, (chunks, rows, data) in enumerate(parts):
        columns = []
        start = len(body)
        for kept, (dictionary, pages) in zip(chunks, data, strict=True):
            meta = dict(kept)
            offset = len(body)
            if dictionary:
                meta[_MD_DICT_PAGE_OFFSET] = (I64, offset)
                body += dictionary
            meta[_MD_DATA_PAGE_OFFSET] = (I64, len(body))
            body += pages
            size = len(body) - offset
            meta[_MD_NUM_VALUES] = (I64, rows)  # flat columns: one value per row
            meta[_MD_TOTAL_COMPRESSED] = (I64, size)
            meta[_MD_TOTAL_UNCOMPRESSED] = (I64, size)  # only a hint to readers (pages carry their own sizes)
            columns.append({_CC_FILE_OFFSET: (I64, offset), _CC_META: (STRUCT, meta)})
        groups.append({
            _RG_COLUMNS: (LIST, (STRUCT, columns)),
            _RG_TOTAL_BYTES: (I64, len(body) - start),
            _RG_NUM_ROWS: (I64, rows),
            _RG_FILE_OFFSET: (I64, start),
            _RG_TOTAL_COMPRESSED: (I64, len(body) - start),
            _RG_ORDINAL: (thrift.I16, ordinal),
        })
        total_rows += rows
    out = dict(head)
    out[_FMD_NUM_ROWS] = (I64, total_rows)
    out[_FMD_ROW_GROUPS] = (LIST, (STRUCT, groups))
    footer = thrift.encode(out)
    body += footer
    body += struct.pack("<I", len(footer)) + MAGIC
    return bytes(body)


def coalesce(ranges: Sequence[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """The byte ranges (offset, length) merged where they overlap or lie at most ``gap`` bytes apart."""
    out: list[list[int]] = []
    for start, length in sorted(r for r in ranges if r[1] > 0):
        if out and start <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], start + length)
        else:
            out.append([start, start + length])
    return [(a, b - a) for a, b in out]


def slicer(ranges: Sequence[tuple[int, int]], data: Sequence[bytes]) -> Callable[[int, int], bytes]:
    """Bytes ``[offset, offset+length)`` out of fetched ``ranges``, which must cover them."""
    spans = list(zip(ranges, data, strict=True))

    def piece(offset: int, length: int) -> bytes:
        if not length:
            return b""
        for (start, size), blob in spans:
            if start <= offset and offset + length <= start + size:
                return blob[offset - start : offset - start + length]
        raise PageLayoutError(f"bytes {offset}..{offset + length} were not fetched")

    return piece

