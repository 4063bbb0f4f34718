"""Payload codecs: how a payload's canonical JSON becomes its stored bytes and back.

The write side is a sequence of small steps (compress, then encrypt); each
step appends its name to the codec string, e.g. ``json+zstd``. The codec is a
hashed field, so a reader always knows how to undo the steps.
"""

from __future__ import annotations

import json
from typing import Any

import zstandard

from .errors import IntegrityError

CODEC_JSON = "json"
CODEC_JSON_ZSTD = "json+zstd"
# A payload never decompresses to more than this; refuses decompression bombs on read.
MAX_DECODED_BYTES = 64 << 20


class Compressor:
    """zstd for payloads of at least ``min_bytes``, kept only where it makes them smaller.

    Smaller payloads stay plain: the segment's Parquet pages are zstd-compressed
    as a whole, which compresses many small payloads better than one frame each,
    and costs the append path nothing. Not thread-safe.
    """

    def __init__(self, level: int = 3, min_bytes: int = 4096) -> None:
        self._zc = zstandard.ZstdCompressor(level=level, write_checksum=False, write_content_size=True)
        self._min_bytes = min_bytes

    def encode(self, payload_json: bytes) -> tuple[str, bytes]:
        if len(payload_json) < self._min_bytes:
            return CODEC_JSON, payload_json
        packed = self._zc.compress(payload_json)
        if len(packed) >= len(payload_json):
            return CODEC_JSON, payload_json
        return CODEC_JSON_ZSTD, packed


_dctx = zstandard.ZstdDecompressor()


def decode_payload_json(codec: str, data: bytes) -> bytes:
    """The canonical JSON bytes of a stored payload. Raises IntegrityError on bad bytes."""
    if codec == CODEC_JSON:
        return data
    if codec == CODEC_JSON_ZSTD:
        try:
            # The frame states its size; refuse a bomb before allocating, and any bytes after the frame.
            size = zstandard.frame_content_size(data)
            if size < 0 or size > MAX_DECODED_BYTES:
                raise IntegrityError(f"payload frame declares {size} bytes (limit {MAX_DECODED_BYTES})")
            dobj = _dctx.decompressobj()
            out = dobj.decompress(data)
            if not dobj.eof or dobj.unused_data or len(out) != size:
                raise IntegrityError("payload is not exactly one whole zstd frame")
            return out
        except zstandard.ZstdError as e:
            raise IntegrityError(f"payload does not decompress: {e}") from e
    raise IntegrityError(f"unknown payload codec {codec!r}")


def decode_payload(codec: str, data: bytes) -> Any:
    """The JSON value of a stored payload."""
    try:
        return json.loads(decode_payload_json(codec, data))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(f"payload is not JSON: {e}") from e
