"""C2SP cosignatures (https://c2sp.org/tlog-cosignature, Ed25519 ``cosignature/v1``) and the bodies of the
witness protocol's ``add-checkpoint`` call (https://c2sp.org/tlog-witness).

A cosignature is a signed-note signature line ``— <cosigner name> base64(key hash || timestamp || signature)``:

- the key hash is the first 4 bytes of SHA-256(name || 0x0A || 0x04 || 32-byte Ed25519 public key);
- the timestamp is the time of the cosignature in POSIX seconds, a big-endian u64 of at most 2^63 - 1;
- the signature is Ed25519 over ``cosignature/v1`` LF ``time <timestamp>`` LF (the timestamp in ASCII decimal,
  no leading zeros) and then the cosigned note's whole text (its lines and final newline, no signature line).

A cosigner states that, at that time, the checkpoint (its first three lines) is the largest consistent tree head
it has seen of the log its origin line names. An ``add-checkpoint`` request body is ``old <size>`` LF, up to 63
lines each a base64 hash of an RFC 6962 consistency proof from that size, an empty line, then the signed note.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import NoteError
from .notes import SIG_PREFIX, format_vkey, parse_vkey, raw_public, split_note

ALG_COSIGNATURE_V1 = b"\x04"
HEADER = "cosignature/v1\n"
MAX_TIMESTAMP = 2**63 - 1
MAX_PROOF_LINES = 63  # what a client may send at most (tlog-witness)
_SIGNATURE_BYTES = 8 + 64  # the timestamp, then the Ed25519 signature
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})")  # a tree size fits in 64 bits
_NAME = re.compile(r"[^\s+]+")  # a note key name: no space, no '+' (signed-note)


@dataclasses.dataclass(frozen=True)
class Cosigner:
    """A cosigner (a witness) as a verifier knows it: its name and Ed25519 public key."""

    name: str
    public: Ed25519PublicKey

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise NoteError(f"a cosigner name has no space nor '+': {self.name!r}")

    @property
    def key_hash(self) -> bytes:
        return hashlib.sha256(self.name.encode() + b"\n" + ALG_COSIGNATURE_V1 + raw_public(self.public)).digest()[:4]

    def vkey(self) -> str:
        """The signed-note verifier key: ``<name>+<key hash, hex>+<base64(0x04 || public key)>``."""
        return format_vkey(self.name, self.key_hash, ALG_COSIGNATURE_V1, self.public)

    @classmethod
    def from_vkey(cls, text: str) -> Cosigner:
        """Parse a verifier key of type 0x04. Raises NoteError."""
        return cls(*parse_vkey(text, ALG_COSIGNATURE_V1, lambda name, public: cls(name, public).key_hash))


def signed_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header line, the timestamp line, then the note's text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"a cosignature timestamp is 0 .. 2^63 - 1, not {timestamp}")
    return f"{HEADER}time {timestamp}\n{text}".encode()


def cosign(key: Ed25519PrivateKey, name: str, text: str, timestamp: int) -> str:
    """The cosignature line (ending in a newline) of ``name``'s key on a note's text, at ``timestamp``."""
    cosigner = Cosigner(name, key.public_key())
    signature = key.sign(signed_message(text, timestamp))
    blob = cosigner.key_hash + timestamp.to_bytes(8, "big") + signature
    return f"{SIG_PREFIX}{name} {base64.b64encode(blob).decode()}\n"


def cosignatures(note: bytes, cosigners: Sequence[Cosigner]) -> dict[str, int]:
    """The cosigners, by name, whose cosignature on the note verifies, each with its timestamp. Signature lines by
    other keys (the log's own, unknown witnesses) are passed over, as the spec asks; a line by a known cosigner
    that does not verify counts for nothing. Raises NoteError when the note does not parse."""
    text, sigs = split_note(note)
    known = {(c.name, c.key_hash): c for c in cosigners}
    out: dict[str, int] = {}
    for sig in sigs:
        cosigner = known.get((sig.name, sig.key_hash))
        if cosigner is None or len(sig.signature) != _SIGNATURE_BYTES:
            continue
        timestamp = int.from_bytes(sig.signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            continue
        try:
            cosigner.public.verify(sig.signature[8:], signed_message(text, timestamp))
        except InvalidSignature:
            continue
        out[cosigner.name] = max(timestamp, out.get(cosigner.name, 0))
    return out


def add_checkpoint_body(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """The body of an ``add-checkpoint`` request."""
    if old_size < 0 or len(proof) > MAX_PROOF_LINES or any(len(h) != 32 for h in proof):
        raise NoteError("an add-checkpoint request has an old size of 0 or more and up to 63 32-byte hashes")
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n").encode() + note


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], bytes]:
    """(old size, consistency proof, signed note) of an ``add-checkpoint`` request body. Raises NoteError (the
    witness answers 400 Bad Request)."""
    head, sep, note = body.partition(b"\n\n")
    if not sep or not note:
        raise NoteError("an add-checkpoint body is an old size line, proof lines, an empty line, then a checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError as e:
        raise NoteError("the lines before the checkpoint are not ASCII") from e
    match = _OLD_LINE.fullmatch(lines[0])
    if match is None:
        raise NoteError(f"the first line is not 'old <size>' (decimal, no leading zeros): {lines[0][:40]!r}")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise NoteError(f"{len(lines) - 1} consistency proof lines: at most {MAX_PROOF_LINES}")
    proof = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except binascii.Error as e:
            raise NoteError(f"a consistency proof line is not base64: {line[:60]!r}") from e
        if len(h) != 32 or base64.b64encode(h).decode() != line:
            raise NoteError(f"a consistency proof line is not one canonical base64 hash: {line[:60]!r}")
        proof.append(h)
    return int(match.group(1)), proof, note
