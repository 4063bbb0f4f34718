"""C2SP signed notes with Ed25519 keys (https://c2sp.org/signed-note).

A note is UTF-8 text ending in a newline, then a blank line, then signature
lines ``— <key name> <base64(key hash || signature)>``. The key hash of an
Ed25519 key is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ConfigError, NoteError

SIG_PREFIX = "\u2014 "
ALG_ED25519 = b"\x01"


def raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(pub: Ed25519PublicKey) -> str:
    """wormjournal's key id: the first 16 bytes of SHA-256(raw public key), hex."""
    return hashlib.sha256(raw_public(pub)).hexdigest()[:32]


def parse_vkey(text: str, alg: bytes,
               key_hash: Callable[[str, Ed25519PublicKey], bytes]) -> tuple[str, Ed25519PublicKey]:
    """(name, public key) of a signed-note verifier key ``<name>+<hex key hash>+<base64(alg || key)>`` whose key is
    a 32-byte Ed25519 key of type ``alg`` and whose key hash is ``key_hash(name, key)``. Raises NoteError."""
    try:
        name, hash_hex, blob = text.strip().split("+", 2)  # base64 has '+' too; a name has none
        raw = base64.b64decode(blob, validate=True)
        claimed = bytes.fromhex(hash_hex)
    except (ValueError, binascii.Error) as e:
        raise NoteError(f"not a verifier key: {text[:80]!r}") from e
    if not name or any(c.isspace() for c in name) or len(claimed) != 4:
        raise NoteError(f"not a verifier key: {text[:80]!r}")
    if raw[:1] != alg or len(raw) != 33:
        raise NoteError(f"not a verifier key of type 0x{alg.hex()} with a 32-byte Ed25519 key: {text[:80]!r}")
    public = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_hash(name, public) != claimed:
        raise NoteError(f"the verifier key of {name} has the wrong key hash")
    return name, public


def format_vkey(name: str, key_hash: bytes, alg: bytes, public: Ed25519PublicKey) -> str:
    """A signed-note verifier key: ``<name>+<hex key hash>+<base64(alg || key)>``."""
    return f"{name}+{key_hash.hex()}+{base64.b64encode(alg + raw_public(public)).decode()}"


def note_key_hash(name: str, pub: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + raw_public(pub)).digest()[:4]


@dataclasses.dataclass(frozen=True)
class VerifyKey:
    """A public key that signs a journal's notes, with its note name."""

    name: str
    public: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id_of(self.public)

    @property
    def note_hash(self) -> bytes:
        return note_key_hash(self.name, self.public)

    def vkey(self) -> str:
        """The signed-note verifier key: ``<name>+<key hash, hex>+<base64(0x01 || public key)>``."""
        return format_vkey(self.name, self.note_hash, ALG_ED25519, self.public)

    @classmethod
    def from_vkey(cls, text: str) -> VerifyKey:
        """Parse an Ed25519 verifier key (type 0x01). Raises NoteError."""
        return cls(*parse_vkey(text, ALG_ED25519, note_key_hash))

    def pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, name: str, data: bytes) -> VerifyKey:
        try:
            pub = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise ConfigError(f"not a PEM public key: {e}") from e
        if not isinstance(pub, Ed25519PublicKey):
            raise ConfigError("the public key is not an Ed25519 key")
        return cls(name, pub)


@dataclasses.dataclass(frozen=True)
class SigningKey:
    name: str
    private: Ed25519PrivateKey

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.name, self.private.public_key())

    def sign_note(self, text: str) -> bytes:
        """The signed note: ``text``, a blank line, one signature line."""
        if not text.endswith("\n") or "\n\n" in text:
            raise ValueError("note text must end in a newline and hold no blank line")
        sig = self.private.sign(text.encode("utf-8"))
        blob = base64.b64encode(self.verify_key.note_hash + sig).decode()
        return f"{text}\n{SIG_PREFIX}{self.name} {blob}\n".encode()

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, name: str, data: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as e:
            raise ConfigError(f"not a PEM private key: {e}") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("the signing key is not an Ed25519 key")
        return cls(name, key)


@dataclasses.dataclass(frozen=True)
class Signature:
    name: str
    key_hash: bytes
    signature: bytes


def split_note(data: bytes) -> tuple[str, list[Signature]]:
    """The text and the signature lines of a signed note (nothing verified yet)."""
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NoteError("note is not UTF-8") from e
    sep = whole.rfind("\n\n")
    if sep < 0 or not whole.endswith("\n"):
        raise NoteError("note has no signature block")
    text, sig_block = whole[: sep + 1], whole[sep + 2 :]
    if "\n\n" in text or text.startswith("\n"):
        raise NoteError("note text contains an empty line")
    sigs: list[Signature] = []
    for line in sig_block[:-1].split("\n"):  # LF only, as the spec says
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"malformed signature line: {line[:60]!r}")
        try:
            name, blob = line[len(SIG_PREFIX) :].split(" ")
            raw = base64.b64decode(blob, validate=True)
            if base64.b64encode(raw).decode() != blob:
                raise ValueError("signature is not canonical base64")
        except (ValueError, binascii.Error) as e:
            raise NoteError(f"malformed signature line: {line[:60]!r}") from e
        if len(raw) < 5:
            raise NoteError("signature too short")
        sigs.append(Signature(name, raw[:4], raw[4:]))
    if not sigs:
        raise NoteError("note has no signature")
    return text, sigs


def open_note(data: bytes, keys: list[VerifyKey]) -> tuple[str, VerifyKey]:
    """Verify a signed note against trusted keys; returns its text and the key that signed it.

    Raises NoteError when no signature by a trusted key verifies.
    """
    text, sigs = split_note(data)
    by_hash = {(k.name, k.note_hash): k for k in keys}
    signer = None
    for sig in sigs:  # every trusted key's signature must verify, not only the first
        key = by_hash.get((sig.name, sig.key_hash))
        if key is None:
            continue
        try:
            key.public.verify(sig.signature, text.encode("utf-8"))
        except InvalidSignature as e:
            raise NoteError(f"bad signature by key {key.key_id}") from e
        signer = signer or key
    if signer is not None:
        return text, signer
    names = ", ".join(f"{s.name}+{s.key_hash.hex()}" for s in sigs)
    raise NoteError(f"not signed by a trusted key (signed by {names})")


def signers(note: bytes, keys: Sequence[VerifyKey]) -> set[str]:
    """Key ids of ``keys`` whose signature on the note verifies (a bad signature is simply not a signer)."""
    text, sigs = split_note(note)
    out = set()
    for sig in sigs:
        for k in keys:
            if (sig.name, sig.key_hash) == (k.name, k.note_hash):
                try:
                    k.public.verify(sig.signature, text.encode())
                    out.add(k.key_id)
                except InvalidSignature:
                    pass
    return out
