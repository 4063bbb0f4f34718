"""A read-only, seekable file over one stored object, read in ranges.

pyarrow reads a Parquet object through it with ranged gets: the footer, then
only the column chunks and row groups asked for, never the whole object.
"""

from __future__ import annotations

import io
import os

from .base import ObjectReader, get_tail

TAIL = 64 << 10  # read first when the size is not known: the footer, and all of a small object


class ObjectFile(io.RawIOBase):
    """``store.get_range`` behind the file protocol. Counts the bytes it reads.

    Without ``size``, the object's last TAIL bytes are fetched first with its size, in one request, and
    reads within them are served from them (a Parquet footer, or a small object's every row group)."""

    def __init__(self, store: ObjectReader, name: str, size: int | None = None) -> None:
        super().__init__()
        self._tail = b""
        self.bytes_read = 0
        if size is None:
            self._tail, size = get_tail(store, name, TAIL)  # NotFoundError when missing
            self.bytes_read = len(self._tail)
        self._store = store
        self.name = name
        self.size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read_range(self, start: int, length: int) -> bytes:
        """Bytes ``start .. start+length-1`` (fewer at the end), from the tail already fetched when they are in it."""
        length = max(0, min(length, self.size - start))
        at = start - (self.size - len(self._tail))
        if at >= 0:
            return self._tail[at : at + length]
        data = self._store.get_range(self.name, start, length)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._pos >= self.size or not len(buffer):
            return 0
        data = self.read_range(self._pos, len(buffer))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)
