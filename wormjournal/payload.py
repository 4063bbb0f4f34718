"""Payload codecs: how a payload's canonical JSON becomes its stored bytes and back.

The write side is a sequence of small steps (compress, then encrypt); each
step appends its name to the codec string, e.g. ``json+zstd``. The codec is a
hashed field, so a reader always knows how to undo the steps.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any, Protocol

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import IntegrityError
from .events import Kind, encode_value

CODEC_JSON = "json"
CODEC_JSON_ZSTD = "json+zstd"
ENCRYPTED = "+aes256gcm"  # the last codec step of an encrypted payload
NONCE_BYTES = 12
_AAD_TAG = b"wormjournal:payload:v1\x00"
# What reads return in place of a payload they cannot decrypt (FORMAT.md, "Payload encryption").
MARKER_KEY = "$wormjournal"
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


# -- encryption -------------------------------------------------------------------------------------


def payload_aad(journal_id: str, stream: str, seq: int, key_id: str, codec: str) -> bytes:
    """The associated data of an encrypted payload: it cannot be moved to another event or key."""
    return _AAD_TAG + b"".join([encode_value(Kind.STR, journal_id), encode_value(Kind.STR, stream),
                                encode_value(Kind.INT, seq), encode_value(Kind.STR, key_id),
                                encode_value(Kind.STR, codec)])


def encrypt(aead: AESGCM, data: bytes, aad: bytes) -> bytes:
    """nonce (12 random bytes) || AES-256-GCM ciphertext and tag."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, data, aad)


def decrypt(key: bytes, data: bytes, aad: bytes) -> bytes:
    """Raises IntegrityError when the bytes or their binding were changed (or the key is not theirs)."""
    try:
        return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as e:
        raise IntegrityError("an encrypted payload does not decrypt with its key (bytes or binding changed)") from e


def marker(state: str, key_id: str | None) -> dict[str, Any]:
    """The value read in place of a payload: ``shredded`` (its key was destroyed) or ``encrypted``
    (read without the key store)."""
    return {MARKER_KEY: state, "key_id": key_id}


def is_marker(value: Any, state: str | None = None) -> bool:
    return (isinstance(value, dict) and set(value) == {MARKER_KEY, "key_id"}
            and (state is None or value[MARKER_KEY] == state))


# A data key by id: the key, None when it was shredded (raises when it was never held).
DataKeys = Callable[[str], "bytes | None"]


class KeySource(Protocol):
    """What reads decrypt with: a key store (``wormjournal.KeyStore``) or anything with its ``data_key``."""

    def data_key(self, key_id: str) -> bytes | None: ...


def read_payload(codec: str, data: bytes, key_id: str | None, *, journal_id: str, stream: str, seq: int,
                 data_key: DataKeys | None) -> Any:
    """The JSON value of a stored payload, decrypting it when it is encrypted.

    Without ``data_key`` an encrypted payload reads as the ``encrypted`` marker, and
    with its key shredded as the ``shredded`` marker: never garbage, never an error
    that stops a replay.
    """
    if not codec.endswith(ENCRYPTED):
        return decode_payload(codec, data)
    if key_id is None:
        raise IntegrityError(f"payload codec {codec!r} without a payload_key_id")
    if data_key is None:
        return marker("encrypted", key_id)
    key = data_key(key_id)
    if key is None:
        return marker("shredded", key_id)
    plain = decrypt(key, data, payload_aad(journal_id, stream, seq, key_id, codec))
    return decode_payload(codec[: -len(ENCRYPTED)], plain)
