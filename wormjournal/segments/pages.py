"""A few pages of a Parquet object, fetched by byte range and read as a Parquet file of their own.

A segment's pages hold ``page_rows`` rows each in every column (FORMAT.md 5, "Pages"),
so page ``p`` of every column holds the same rows. The footer says where each column
chunk starts and the offset index (Parquet's page index) where each of its pages does.
To read pages ``p0..p1`` of a row group, this module fetches, for each column, its
dictionary page (if any) and those data pages, then writes them one after another
behind a footer of its own: pyarrow decodes that small file as it would the whole one.
The pages of several row groups, even of several objects with the same schema, go into
one file; those without dictionary pages into one row group, whose column chunks are
their pages one after another (a data page carries its own value count and sizes).

Nothing here is trusted: the rows that come out are authenticated by their hashes
against the page roots the segment's footer carries, which make its signed Merkle root.
"""

from __future__ import annotations

import array
import bisect
import operator
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow._parquet as _pq
import pyarrow.parquet as pq

from .. import native
from ..errors import PageLayoutError
from . import thrift
from .thrift import I64, LIST, STRUCT, Struct

MAGIC = b"PAR1"
# Byte ranges this close are fetched as one. A store says how close with its ``range_gap``: on a local disk
# reads cost little and gaps only add bytes (0), over HTTP each request is a round trip (S3: 256 KiB).
DEFAULT_GAP = 0
TAIL = 64 << 10  # the first read of a footer: most segments' footers and offset indexes fit, so one request opens them

# Thrift field ids of parquet.thrift
_FMD_SCHEMA, _FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KEY_VALUES, _FMD_CREATED_BY, _FMD_COLUMN_ORDERS = 2, 3, 4, 5, 6, 7
_RG_COLUMNS, _RG_TOTAL_BYTES, _RG_NUM_ROWS, _RG_FILE_OFFSET, _RG_TOTAL_COMPRESSED, _RG_ORDINAL = 1, 2, 3, 5, 6, 7
_CC_FILE_OFFSET, _CC_META, _CC_OI_OFFSET, _CC_OI_LENGTH = 2, 3, 4, 5
_MD_NUM_VALUES, _MD_TOTAL_UNCOMPRESSED, _MD_TOTAL_COMPRESSED = 5, 6, 7
_MD_DATA_PAGE_OFFSET, _MD_DICT_PAGE_OFFSET = 9, 11
_MD_KEEP = (1, 2, 3, 4, 8)  # type, encodings, path, codec, key-value metadata: the same in every row group

Fetch = Callable[[Sequence[tuple[int, int]]], list[bytes]]  # byte ranges (offset, length) -> their bytes


def read_footer(size: int, fetch: Fetch) -> tuple[bytes, int, bytes]:
    """The footer (FileMetaData, Thrift compact) of a Parquet object of ``size`` bytes, and the bytes fetched
    before it with their offset (the offset indexes are there, as writers put them); one request when the
    footer is within the last TAIL bytes. Raises PageLayoutError."""
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
        return tail[len(tail) - 8 - length : -8], start, tail[: len(tail) - 8 - length]
    (footer,) = fetch([(size - 8 - length, length)])
    return footer, start, b""


def file_metadata(footer: bytes) -> pq.FileMetaData:
    """pyarrow's metadata object from footer bytes (so that pyarrow does not read the footer again)."""
    return _pq._reconstruct_filemetadata(pa.py_buffer(footer))


# The pages of one row group's columns (PageLayout.columns): the number of page offsets of each column (its pages
# and the end of the last), each column's dictionary page (offset, length), (0, 0) for none, whether any column has
# one, and every column's page offsets one column after another (packed by _narrow). Ints, bytes and tuples: the
# garbage collector stops walking them, however many segments' layouts a reader holds.
_GroupPages = tuple[int, tuple[tuple[int, int], ...], bool, bytes]


class PageLayout:
    """The footer of one Parquet object, decoded, and the offset indexes of its row groups (fetched when
    first needed), whose data pages must hold ``page_rows`` rows each in every column. Raises
    PageLayoutError when the object has no offset index or other pages."""

    def __init__(self, footer: bytes, fetch: Fetch, page_rows: int, before: tuple[int, bytes] = (0, b""),
                 size: int | None = None) -> None:
        # Only what reading pages needs is kept of the footer, as ints and bytes: a reader holds the layouts of
        # hundreds of segments, and a decoded footer's nested dicts would be objects its garbage collector walks.
        # Objects alike in head decode as one. ``metadata``: the key-value metadata, which its holder may drop.
        self.head_key, self._groups, self._plain, self.metadata = _footer_layout(footer)
        self._fetch = fetch
        # Of the bytes fetched with the footer, the offset indexes of every row group, when all are there.
        spans = [(o, o + n) for _, chunks in self._groups for o, n, _ in chunks]
        lo, hi = min((a for a, _ in spans), default=0), max((b for _, b in spans), default=0)
        at, held = before
        self._before = (lo, held[lo - at : hi - at]) if spans and at <= lo <= hi <= at + len(held) else (0, b"")
        self.page_rows = page_rows
        self._columns: dict[int, _GroupPages] = {}
        # Decoded again for what only a file assembled by pyarrow needs (head, kept); with the object's ``size``,
        # read again then instead of kept (most of a segment's footer is its page roots, which it holds apart).
        self._size = size
        self._footer = footer if size is None else None
        self._kept: dict[int, tuple[bytes, ...]] = {}
        self._head: Struct | None = None

    def footer(self) -> bytes:
        """The footer's bytes: those it was made from, or (made with the object's size) read again."""
        if self._footer is not None:
            return self._footer
        assert self._size is not None
        return read_footer(self._size, self._fetch)[0]

    @property
    def head(self) -> Struct:
        """The footer's fields every file assembled from its pages repeats (:func:`assemble`)."""
        if self._head is None:
            self._head = _file_head(thrift.decode(self.footer())[0])
        return self._head

    @property
    def groups(self) -> int:
        return len(self._groups)

    def group_rows(self, j: int) -> int:
        return self._groups[j][0]

    def columns(self, j: int) -> _GroupPages:
        """The pages of each column of row group ``j`` (one request for its offset indexes, then cached),
        checked to be pages of ``page_rows`` rows, one after another."""
        cols = self._columns.get(j)
        if cols is not None:
            return cols
        chunks = self._groups[j][1]
        spans = [(offset, length) for offset, length, _ in chunks]
        if not spans:
            raise PageLayoutError(f"row group {j} has no columns")
        lo = min(o for o, _ in spans)
        hi = max(o + n for o, n in spans)
        if lo < 0 or hi - lo > 64 << 20:
            raise PageLayoutError(f"row group {j}: offset index out of range")
        at, held = self._before
        if at <= lo and hi <= at + len(held):
            raw = held[lo - at : hi - at]
        else:
            (raw,) = self._fetch([(lo, hi - lo)])
        starts = tuple(range(0, self.group_rows(j), self.page_rows))
        checked = getattr(_native, "page_offsets", None)
        if checked is not None:  # in C, one call for the row group: no object per page
            try:
                packed = checked(raw, tuple((o - lo, o - lo + n) for o, n, _ in chunks), self.page_rows,
                                 self.group_rows(j))
            except ValueError as e:
                raise PageLayoutError(f"row group {j}: {e}") from None
            n = len(starts) + 1
            column_starts = memoryview(packed).cast("q")[::n]
            dictionaries = [(d, first - d) if d >= 0 else (0, 0) for (_, _, d), first in zip(chunks, column_starts,
                                                                                              strict=True)]
            group = self._columns[j] = (n, tuple(dictionaries), any(dn for _, dn in dictionaries), _narrow(packed))
            return group
        offsets = array.array("q")
        dictionaries = []
        for offset, length, dictionary in chunks:
            firsts, sizes, rows = thrift.page_columns(raw, offset - lo, offset - lo + length)
            if not firsts or rows != starts:
                raise PageLayoutError(f"row group {j}: its pages are not of {self.page_rows} rows")
            ends = tuple(map(operator.add, firsts, sizes))
            if ends[:-1] != firsts[1:]:
                raise PageLayoutError(f"row group {j}: its pages are not one after another")
            dictionaries.append((dictionary, firsts[0] - dictionary) if dictionary >= 0 else (0, 0))
            offsets.extend(firsts)
            offsets.append(ends[-1])
        group = self._columns[j] = (len(starts) + 1, tuple(dictionaries), any(dn for _, dn in dictionaries),
                                    _narrow(offsets.tobytes()))
        return group

    def page_span(self, j: int, first: int, last: int) -> list[tuple[int, int, int, int]]:
        """For each column of row group ``j``: (offset, length) of its dictionary page ((0, 0) for none) and of
        its data pages ``first .. last`` (numbered in the row group)."""
        n, dictionaries, _, packed = self.columns(j)
        offsets = _offsets(packed)
        return [(d0, dn, offsets[c * n + first], offsets[c * n + last + 1] - offsets[c * n + first])
                for c, (d0, dn) in enumerate(dictionaries)]

    def data_ranges(self, j: int, first: int, last: int) -> list[tuple[int, int]] | None:
        """For each column of row group ``j``, (offset, length) of its data pages ``first .. last``; None when a
        column has a dictionary page (:meth:`page_span` then)."""
        n, _, dictionary, packed = self.columns(j)
        if dictionary:
            return None
        offsets = _offsets(packed)
        starts = offsets[first::n].tolist()
        return list(zip(starts, map(operator.sub, offsets[last + 1 :: n].tolist(), starts), strict=True))

    def plain(self, j: int) -> tuple[tuple[int, int], ...]:
        """Each column's (codec, Parquet type) in row group ``j`` as :func:`decode_plain` takes them (codec -1
        where it cannot decode the column: a dictionary page or another codec)."""
        return self._plain[j]

    def kept(self, j: int) -> list[bytes]:
        """For each column of row group ``j``, the fields of its metadata that an assembled file keeps,
        encoded once (a struct without its end: :func:`assemble` appends the fields that change)."""
        kept = self._kept.get(j)
        if kept is None:
            fmd, _ = thrift.decode(self.footer())
            encoded: dict[str, bytes] = {}  # the same metadata in every column of a kind: encoded once
            out = []
            for c in fmd[_FMD_ROW_GROUPS][1][1][j][_RG_COLUMNS][1][1]:
                keep = {k: v for k, v in c[_CC_META][1].items() if k in _MD_KEEP}
                key = repr(keep)
                if key not in encoded:
                    encoded[key] = thrift.encode(keep)[:-1]
                out.append(encoded[key])
            kept = self._kept[j] = tuple(out)
        return list(kept)


def _narrow(packed: bytes) -> bytes:
    """Page offsets (int64, packed) as uint32 when they fit (a segment under 4 GiB): half the bytes a reader holds
    per segment. :func:`_offsets` reads either back."""
    offsets = np.frombuffer(packed, dtype=np.int64)
    if len(offsets) and 0 <= offsets.min() and offsets.max() < 1 << 32:
        return offsets.astype(np.uint32).tobytes() + b"I"
    return packed + b"q"


def _offsets(narrowed: bytes) -> memoryview:
    """The page offsets :func:`_narrow` packed."""
    view = memoryview(narrowed)[:-1]
    return view.cast("I") if narrowed[-1] == ord("I") else view.cast("q")


_Groups = list[tuple[int, tuple[tuple[int, int, int], ...]]]  # rows, and each column's offset index and dictionary
_Plain = list[tuple[tuple[int, int], ...]]  # per row group, each column's (codec, type) as decode_plain takes them
_MISSING = -(1 << 63)  # a field the footer lacks (native footer_layout)


def _footer_layout(footer: bytes) -> tuple[bytes, _Groups, _Plain, dict[str, str]]:
    """A key of the footer's head (fields alike, keys alike), what PageLayout keeps of each row group, and the
    key-value metadata: by the C extension without an object per field, or from the footer decoded whole. Raises
    PageLayoutError."""
    groups: _Groups = []
    plain: _Plain = []
    layout = getattr(_native, "footer_layout", None)
    try:
        if layout is not None:
            head, raw, kv = layout(footer)
            known: dict[bytes, tuple[tuple[int, int], ...]] = {}  # row groups alike in codecs and types: one tuple
            for rows, packed in raw:
                cells = memoryview(packed).cast("q")
                if rows is None or (cells and min(cells) == _MISSING):
                    raise PageLayoutError("a row group or column chunk lacks a field pages are read by")
                dict_at = cells[2::5].tolist()
                groups.append((rows, tuple(zip(cells[0::5].tolist(), cells[1::5].tolist(), dict_at, strict=True))))
                key = bytes(cells[2::5]) + bytes(cells[3::5]) + bytes(cells[4::5])
                if key not in known:
                    known[key] = tuple((codec if d == -1 and codec in _CODECS.values() else _NO_CODEC, ptype)
                                       for d, codec, ptype in zip(dict_at, cells[3::5].tolist(), cells[4::5].tolist(),
                                                                  strict=True))
                plain.append(known[key])
            return bytes(head), groups, plain, _key_values(kv)
        fmd, _ = thrift.decode(footer)
        for g in fmd[_FMD_ROW_GROUPS][1][1]:
            chunks, kinds = [], []
            for c in g[_RG_COLUMNS][1][1]:
                meta: Struct = c[_CC_META][1]
                d = meta.get(_MD_DICT_PAGE_OFFSET)
                chunks.append((int(c[_CC_OI_OFFSET][1]), int(c[_CC_OI_LENGTH][1]), -1 if d is None else int(d[1])))
                codec = meta[_MD_CODEC][1]
                kinds.append((codec if d is None and codec in _CODECS.values() else _NO_CODEC, meta[_MD_TYPE][1]))
            groups.append((int(g[_RG_NUM_ROWS][1]), tuple(chunks)))
            plain.append(tuple(kinds))
        kv = fmd[_FMD_KEY_VALUES][1] if _FMD_KEY_VALUES in fmd else None
        return thrift.encode(_file_head(fmd)), groups, plain, _key_values(kv)
    except PageLayoutError:
        raise
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:  # a field of another type, or none
        raise PageLayoutError(f"footer cannot be decoded: {e}") from e


def _key_values(value: object) -> dict[str, str]:
    """A footer's key_value_metadata (a list of KeyValue structs, as thrift.decode gives a field's value) as text,
    the last value of a key repeated; a key without a value has ''. Raises PageLayoutError."""
    if value is None:
        return {}
    pair: tuple[Any, Any] = value  # type: ignore[assignment]  # not a pair: ValueError, the caller refuses it
    elem, items = pair
    if elem != STRUCT:
        raise PageLayoutError("key-value metadata are not structs")
    out = {}
    for item in items:
        key, val = item[1], item.get(2, (thrift.BINARY, b""))
        if key[0] != thrift.BINARY or val[0] != thrift.BINARY:
            raise PageLayoutError("a key-value metadata entry is not text")
        try:
            out[key[1].decode()] = val[1].decode()
        except UnicodeDecodeError as e:
            raise PageLayoutError(f"key-value metadata are not UTF-8: {e}") from None
    return out


def _file_head(fmd: Struct) -> Struct:
    """The fields of a footer that every assembled file repeats, encoded once: version, schema, writer,
    column orders. No key-value metadata: the Arrow schema pyarrow stores there carries the whole footer
    metadata again (the page roots), and the Parquet types alone decode the columns (the caller casts)."""
    return {k: (t, thrift.Raw(t, v)) for k, (t, v) in fmd.items()
            if k in (1, _FMD_SCHEMA, _FMD_CREATED_BY, _FMD_COLUMN_ORDERS)}


def assemble(head: Struct, parts: Sequence[tuple[list[bytes], int, list[tuple[bytes, bytes]]]]) -> bytes:
    """A Parquet file of the rows of ``parts``, in order: for each part, the kept fields of its original
    column metadata (:meth:`PageLayout.kept`), its rows, and for each column the bytes of its dictionary page
    (b"" for none) and of its data pages. ``head`` is the original footer's (:attr:`PageLayout.head`).
    Consecutive parts without dictionary pages whose columns are alike (types, encodings, codecs) are one
    row group, each column chunk their pages one after another (a data page carries its own values and
    sizes); any other part is a row group of its own."""
    groups: list[list[tuple[list[bytes], int, list[tuple[bytes, bytes]]]]] = []
    for part in parts:
        plain = not any(dictionary for dictionary, _ in part[2])
        if plain and groups and groups[-1][0][0] == part[0] and not any(d for d, _ in groups[-1][-1][2]):
            groups[-1].append(part)
        else:
            groups.append([part])
    body = bytearray(MAGIC)
    row_groups = []
    total_rows = 0
    for ordinal, group in enumerate(groups):
        kept = group[0][0]
        rows = sum(part[1] for part in group)
        chunks = bytearray()
        start = len(body)
        for c, prefix in enumerate(kept):
            offset = len(body)
            meta = bytearray(prefix)
            dictionary = group[0][2][c][0]
            if dictionary:
                thrift.put_field(meta, _MD_DICT_PAGE_OFFSET, I64, offset)
                body += dictionary
            thrift.put_field(meta, _MD_DATA_PAGE_OFFSET, I64, len(body))
            for part in group:
                body += part[2][c][1]
            size = len(body) - offset
            thrift.put_field(meta, _MD_NUM_VALUES, I64, rows)  # flat columns: one value per row
            thrift.put_field(meta, _MD_TOTAL_COMPRESSED, I64, size)
            thrift.put_field(meta, _MD_TOTAL_UNCOMPRESSED, I64, size)  # a hint only (pages carry their sizes)
            meta.append(thrift.STOP)
            chunk = bytearray()  # a ColumnChunk: its file offset and its metadata
            thrift.put_field(chunk, _CC_FILE_OFFSET, I64, offset)
            thrift.put_field(chunk, _CC_META, STRUCT, bytes(meta))
            chunk.append(thrift.STOP)
            chunks += chunk
        columns = bytearray()
        thrift.list_header(columns, len(kept), STRUCT)
        row_groups.append({
            _RG_COLUMNS: (LIST, thrift.Raw.of(bytes(columns + chunks))),
            _RG_TOTAL_BYTES: (I64, len(body) - start),
            _RG_NUM_ROWS: (I64, rows),
            _RG_FILE_OFFSET: (I64, start),
            _RG_TOTAL_COMPRESSED: (I64, len(body) - start),
            _RG_ORDINAL: (thrift.I16, ordinal),
        })
        total_rows += rows
    out = dict(head)
    out[_FMD_NUM_ROWS] = (I64, total_rows)
    out[_FMD_ROW_GROUPS] = (LIST, (STRUCT, row_groups))
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


def apart(ranges: Sequence[tuple[int, int]], gap: int) -> bool:
    """Whether the byte ranges (offset, length) are in order, none empty, each more than ``gap`` bytes after the
    one before: what :func:`coalesce` returns for them is themselves."""
    end = -gap - 1
    for start, length in ranges:
        if length <= 0 or start <= end + gap:
            return False
        end = start + length
    return True


def slicer(ranges: Sequence[tuple[int, int]], data: Sequence[bytes]) -> Callable[[int, int], bytes]:
    """Bytes ``[offset, offset+length)`` out of fetched ``ranges`` (sorted, apart: as :func:`coalesce` gives
    them), which must cover them."""
    starts = [start for start, _ in ranges]
    blobs = list(zip(ranges, data, strict=True))

    def piece(offset: int, length: int) -> bytes:
        if not length:
            return b""
        i = bisect.bisect_right(starts, offset) - 1
        if i >= 0:
            (start, size), blob = blobs[i]
            if offset + length <= start + size:
                return blob[offset - start : offset - start + length]
        raise PageLayoutError(f"bytes {offset}..{offset + length} were not fetched")

    return piece



# -- decoding plain pages without pyarrow ---------------------------------------------------------------------

_MD_TYPE, _MD_CODEC = 1, 4
_CC_FILE_PATH = 1
_INT64, _BYTE_ARRAY = 2, 6  # Parquet physical types
_CODECS = {"UNCOMPRESSED": 0, "ZSTD": 6}  # the codecs decode_chunk knows, by pyarrow's names: thrift ids
_NO_CODEC = -1
_native = native.module if hasattr(native.module, "decode_chunk") else None  # None: pyarrow decodes (tests set it)

# A row group as decode_plain takes it: its rows, and for each column chunk (start, end, codec, physical type),
# codec -1 for a chunk it cannot decode (a dictionary page, another codec, another file).
Chunks = list[tuple[int, list[tuple[int, int, int, int]]]]


def chunks_of_metadata(md: pq.FileMetaData, row_groups: Sequence[int]) -> Chunks:
    """The column chunks of ``row_groups`` as pyarrow read them from a footer."""
    out: Chunks = []
    for j in row_groups:
        rg = md.row_group(j)
        cols = []
        for c in range(rg.num_columns):
            cc = rg.column(c)
            codec = _CODECS.get(cc.compression, _NO_CODEC) if not cc.has_dictionary_page else _NO_CODEC
            cols.append((cc.data_page_offset, cc.data_page_offset + cc.total_compressed_size, codec,
                         _INT64 if cc.physical_type == "INT64" else _BYTE_ARRAY if cc.physical_type == "BYTE_ARRAY"
                         else -1))
        out.append((rg.num_rows, cols))
    return out


def footer_of(data: bytes) -> Struct:
    """The decoded footer of a whole Parquet file in memory. Raises PageLayoutError."""
    length = struct.unpack("<I", data[-8:-4])[0] if len(data) >= 12 and data[-4:] == MAGIC else -1
    if length < 0 or length + 12 > len(data):
        raise PageLayoutError("no Parquet footer")
    return thrift.decode(data, len(data) - 8 - length, len(data) - 8)[0]


def chunks_of_footer(fmd: Struct) -> Chunks:
    """The column chunks of every row group of a decoded footer (an assembled file's)."""
    out: Chunks = []
    for group in fmd[_FMD_ROW_GROUPS][1][1]:
        cols = []
        for chunk in group[_RG_COLUMNS][1][1]:
            meta = chunk[_CC_META][1]
            codec = meta[_MD_CODEC][1]
            if _CC_FILE_PATH in chunk or _MD_DICT_PAGE_OFFSET in meta or codec not in _CODECS.values():
                codec = _NO_CODEC
            start = int(meta[_MD_DATA_PAGE_OFFSET][1])
            cols.append((start, start + int(meta[_MD_TOTAL_COMPRESSED][1]), codec, meta[_MD_TYPE][1]))
        out.append((int(group[_RG_NUM_ROWS][1]), cols))
    return out


def decodable(chunks: Chunks) -> bool:
    """Whether :func:`decode_plain` can decode these column chunks (the C extension, and codecs it knows)."""
    return _native is not None and all(codec != _NO_CODEC for _, cols in chunks for _, _, codec, _ in cols)


def decode_plain(data: bytes, schema: pa.Schema, chunks: Chunks) -> pa.Table | None:
    """The rows of ``chunks`` of a Parquet file whose Parquet schema the caller has checked to be ``schema``
    (flat INT64, timestamp, string and binary columns, ``optional`` exactly where nullable), decoded by the C
    extension straight into Arrow buffers when they are laid out as segments are written (FORMAT.md 5:
    version 1 data pages, PLAIN values, no dictionary, zstd or no compression). None when they are
    laid out otherwise or do not decode (or without the extension): the caller then reads the file with
    pyarrow, whose answer, rows or error, stands. Pages of a few hundred rows decode several times faster
    this way: pyarrow makes a zstd context per page. A corrupt zstd frame (Parquet's have no checksum) may
    decode to other wrong bytes here than in pyarrow's zstd: the rows' hashes refuse either."""
    if _native is None:
        return None
    kinds = [(ord("l"), _INT64) if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type) else
             (ord("b"), _BYTE_ARRAY) for f in schema]
    columns: list[list[pa.Array]] = [[] for _ in kinds]
    try:
        for rows, cols in chunks:
            if len(cols) != len(kinds):
                return None
            for c, ((start, end, codec, ptype), (kind, want), field) in enumerate(zip(cols, kinds, schema,
                                                                                        strict=True)):
                if codec == _NO_CODEC or ptype != want:
                    return None
                # Buffers from Arrow's memory pool, which keeps its pages: fresh ones would fault on every write.
                validity = pa.allocate_buffer((rows + 7) // 8)
                if kind == ord("l"):
                    offsets, values = None, pa.allocate_buffer(rows * 8)
                else:
                    offsets = pa.allocate_buffer(4 * (rows + 1))
                    values = pa.allocate_buffer(_native.column_bound(data, start, end, codec, rows))
                nulls, length = _native.decode_chunk(data, start, end, codec, kind, int(field.nullable), rows,
                                                           validity, offsets, values)
                buffers = [validity if nulls else None] + ([offsets] if offsets is not None else [])
                buffers.append(values.slice(0, length))
                array = pa.Array.from_buffers(field.type, rows, buffers, null_count=nulls)
                if pa.types.is_string(field.type):
                    array.validate(full=True)  # UTF-8, as pyarrow's reader has it
                columns[c].append(array)
    except (ValueError, pa.ArrowException):
        return None
    return pa.Table.from_arrays([pa.chunked_array(parts, type=field.type) for parts, field in zip(columns, schema,
                                                                                                   strict=True)],
                                schema=schema)


def decode_hashed(data: bytes, schema: pa.Schema, chunks: Chunks, order: Sequence[tuple[str, str]], tag: bytes,
                  keep: Sequence[str]) -> tuple[bytes, dict[str, pa.Array]] | None:
    """The rows of ``chunks`` (as :func:`decode_plain` takes them) hashed and decoded in one pass by the C extension:
    for each row, SHA-256(``tag`` || the row's bytes of each column of ``order`` in turn) as ``event_hashes`` takes
    them (``order``: column names with their kinds, r, s, b or i), 32 bytes a row, and the columns named in ``keep``
    as one array each. Each row is hashed while its decompressed pages are in the cache, and a column not kept (the
    payloads) is never copied. Requires what decode_plain does, and that page ``k`` of every column holds the same
    rows (FORMAT.md 5, "Pages"); None otherwise (or without the extension): the caller then decodes and hashes in
    two steps, whose answer stands. String columns are checked to be UTF-8, as pyarrow's reader checks them."""
    if _native is None or not hasattr(_native, "decode_hash"):
        return None
    names = schema.names
    kinds = [ord("l") if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type) else
             ord("s") if pa.types.is_string(f.type) else ord("b") for f in schema]
    groups = []
    for rows, cols in chunks:
        if len(cols) != len(kinds):
            return None
        for (_, _, codec, ptype), kind in zip(cols, kinds, strict=True):
            if codec == _NO_CODEC or ptype != (_INT64 if kind == ord("l") else _BYTE_ARRAY):
                return None
        groups.append((rows, tuple((start, end, codec) for start, end, codec, _ in cols)))
    columns = tuple((kind, int(f.nullable), int(f.name in keep)) for kind, f in zip(kinds, schema, strict=True))
    try:
        hashes, buffers = _native.decode_hash(data, tuple(groups), columns,
                                              tuple((names.index(name), ord(code)) for name, code in order), tag)
    except ValueError:
        return None
    n = len(hashes) // 32
    out = {}
    for field, got in zip(schema, buffers, strict=True):
        if got is not None:
            validity, nulls, offsets, values = got
            bufs = [None if validity is None else pa.py_buffer(validity)]
            bufs += [pa.py_buffer(offsets)] if offsets is not None else []
            out[field.name] = pa.Array.from_buffers(field.type, n, [*bufs, pa.py_buffer(values)], null_count=nulls)
    return hashes, out
