"""Payload codecs: how a payload (canonical JSON, or bytes) becomes its stored bytes and back.

The write side is a sequence of small steps (compress, encrypt, then store apart); each
step appends its name to the codec string, e.g. ``json+zstd``. The codec is a
hashed field, so a reader always knows how to undo the steps. A payload stored apart
(``+ref``, FORMAT.md 3.5) is an object of its own, named by its SHA-256, and the event
holds that hash and the length.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any, Protocol

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import native
from .errors import IntegrityError
from .events import Kind, encode_value

CODEC_JSON = "json"
CODEC_JSON_ZSTD = "json+zstd"
CODEC_BYTES = "bytes"  # a payload given as bytes: stored as they are, read back as bytes
ENCRYPTED = "+aes256gcm"  # the codec step of an encrypted payload
STORED_APART = "+ref"  # the last codec step of a payload stored in an object of its own (FORMAT.md 3.5)
REF_BYTES = 40  # SHA-256 of the object || u64be(its length)
NONCE_BYTES = 12
_AAD_TAG = b"wormjournal:payload:v1\x00"
# What reads return in place of a payload they cannot decrypt (FORMAT.md, "Payload encryption").
MARKER_KEY = "$wormjournal"
# A payload never decompresses to more than this; refuses decompression bombs on read.
MAX_DECODED_BYTES = 1 << 30


class Compressor:
    """zstd for payloads of at least ``min_bytes``, kept only where it makes them smaller.

    Smaller payloads stay plain: the segment's Parquet pages are zstd-compressed
    as a whole, which compresses many small payloads better than one frame each,
    and costs the append path nothing. Not thread-safe.
    """

    def __init__(self, level: int = 3, min_bytes: int = 4096) -> None:
        self._zc = zstandard.ZstdCompressor(level=level, write_checksum=False, write_content_size=True)
        self._min_bytes = min_bytes

    def encode(self, payload_json: bytes, base: str = CODEC_JSON) -> tuple[str, bytes]:
        """(codec, stored bytes) of a payload's canonical JSON, or of its bytes with ``base`` = ``bytes``."""
        if len(payload_json) < self._min_bytes:
            return base, payload_json
        packed = self._zc.compress(payload_json)
        if len(packed) >= len(payload_json):
            return base, payload_json
        return base + "+zstd", packed


_dctx = zstandard.ZstdDecompressor()


def decode_payload_json(codec: str, data: bytes) -> bytes:
    """The canonical JSON bytes (or, codec ``bytes``, the bytes) of a stored payload. Raises IntegrityError on bad
    bytes."""
    if codec in (CODEC_JSON, CODEC_BYTES):
        return data
    if codec in (CODEC_JSON_ZSTD, CODEC_BYTES + "+zstd"):
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
    """The JSON value of a stored payload (bytes for codec ``bytes``)."""
    if codec.split("+", 1)[0] == CODEC_BYTES:
        return decode_payload_json(codec, data)
    try:
        return json.loads(decode_payload_json(codec, data))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(f"payload is not JSON: {e}") from e


# -- encryption -------------------------------------------------------------------------------------


_native = native.module  # None: the Python path (the FORMAT.md vectors run through both)


def payload_aad(journal_id: str, stream: str, seq: int, key_id: str, codec: str) -> bytes:
    """The associated data of an encrypted payload: it cannot be moved to another event or key."""
    if _native is not None:
        return _AAD_TAG + _native.encode_fields((journal_id, stream, seq, key_id, codec), b"ssiss")  # type: ignore[no-any-return]
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
# The bytes of a payload stored apart, by its SHA-256 hex (raises NotFoundError when no object holds them).
Fetch = Callable[[str], bytes]


def make_ref(stored: bytes | memoryview) -> tuple[str, bytes]:
    """(SHA-256 hex, the 40 bytes an event holds) of a payload stored apart."""
    digest = hashlib.sha256(stored).digest()
    return digest.hex(), digest + len(stored).to_bytes(8, "big")


def parse_ref(data: bytes) -> tuple[str, int]:
    """(SHA-256 hex, length) of the object a ``+ref`` payload names. Raises IntegrityError."""
    if len(data) != REF_BYTES:
        raise IntegrityError(f"a payload stored apart is named by {REF_BYTES} bytes, not {len(data)}")
    return data[:32].hex(), int.from_bytes(data[32:], "big")


def resolve_ref(data: bytes, fetch: Fetch | None) -> bytes | None:
    """The stored bytes a ``+ref`` payload names, checked against its hash and length (None without ``fetch``).
    Raises IntegrityError when the object is not those bytes, NotFoundError when it is missing."""
    digest, length = parse_ref(data)
    if fetch is None:
        return None
    stored = fetch(digest)
    if len(stored) != length or hashlib.sha256(stored).hexdigest() != digest:
        raise IntegrityError(f"the payload object {digest} is not the bytes its event names "
                             f"({len(stored)} bytes, {length} named)")
    return stored


class KeySource(Protocol):
    """What reads decrypt with: a key store (``wormjournal.KeyStore``) or anything with its ``data_key``."""

    def data_key(self, key_id: str) -> bytes | None: ...


def read_payload(codec: str, data: bytes, key_id: str | None, *, journal_id: str, stream: str, seq: int,
                 data_key: DataKeys | None, fetch: Fetch | None = None) -> Any:
    """The JSON value (or bytes) of a stored payload, fetching it when it is stored apart and decrypting it when it
    is encrypted.

    Without ``data_key`` an encrypted payload reads as the ``encrypted`` marker, and
    with its key shredded as the ``shredded`` marker: never garbage, never an error
    that stops a replay. Without ``fetch``, a payload stored apart reads as the
    ``stored_apart`` marker. Raises IntegrityError on bytes that are not what the event
    names, NotFoundError when a payload object is missing.
    """
    apart = codec.endswith(STORED_APART)
    if apart:
        codec = codec[: -len(STORED_APART)]  # what was encrypted was named without it (FORMAT.md 3.5)
    key = None
    if codec.endswith(ENCRYPTED):
        if key_id is None:
            raise IntegrityError(f"payload codec {codec!r} without a payload_key_id")
        if data_key is None:
            return marker("encrypted", key_id)
        key = data_key(key_id)
        if key is None:
            return marker("shredded", key_id)
    if apart:
        stored = resolve_ref(data, fetch)
        if stored is None:
            digest, length = parse_ref(data)
            return {MARKER_KEY: "stored_apart", "sha256": digest, "bytes": length}
        data = stored
    if key is None:
        return decode_payload(codec, data)
    plain = decrypt(key, data, payload_aad(journal_id, stream, seq, key_id or "", codec))
    return decode_payload(codec[: -len(ENCRYPTED)], plain)
