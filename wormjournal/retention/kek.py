"""Key-encryption key providers of the key store: they wrap and unwrap data keys, and destroy their own copy of a
wrapped key when it is shredded. A local master key file (the default) or AWS KMS."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import CorruptKeyError, KeyStoreError, KeyStoreMissingError, ValidationError, WrongKekError
from ..storage.local import fsync_dir

_DEK_TAG = b"wormjournal:dek:v1\x00"
_KEK_ID_TAG = b"wormjournal:kek-id:v1\x00"


class KekProvider(Protocol):
    """Wraps and unwraps data keys; ``destroy`` removes the provider's copy of a wrapped key."""

    name: str
    poolable: bool  # True when data keys may be wrapped ahead of need, before their scope is known

    def settings(self) -> dict[str, Any]: ...
    def wrap(self, key_id: str, dek: bytes) -> tuple[bytes, str | None]: ...
    def unwrap(self, key_id: str, wrapped: bytes, kms_key: str | None) -> bytes: ...
    def destroy(self, kms_key: str | None) -> str: ...


class LocalKek:
    """A 32-byte master key in a file outside the store (mode 0600); wraps with AES-256-GCM."""

    name = "local"
    poolable = True  # a key can be wrapped before its scope is known

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._aead = AESGCM(key)
        self.kek_id = hmac.new(key, _KEK_ID_TAG, hashlib.sha256).hexdigest()[:32]

    @classmethod
    def create(cls, path: Path) -> LocalKek:
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key.hex().encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        return cls(path, key)

    @classmethod
    def load(cls, path: Path) -> LocalKek:
        try:
            key = bytes.fromhex(path.read_text().strip())
        except FileNotFoundError as e:
            raise KeyStoreMissingError(f"the master key file {path} is missing") from e
        except ValueError as e:
            raise KeyStoreError(f"the master key file {path} is not hex") from e
        if len(key) != 32:
            raise KeyStoreError(f"the master key file {path} does not hold 32 bytes")
        return cls(path, key)

    def settings(self) -> dict[str, Any]:
        return {"kek_id": self.kek_id}

    def wrap(self, key_id: str, dek: bytes) -> tuple[bytes, str | None]:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, dek, _DEK_TAG + key_id.encode()), None

    def unwrap(self, key_id: str, wrapped: bytes, kms_key: str | None) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], _DEK_TAG + key_id.encode())
        except (InvalidTag, ValueError) as e:
            raise CorruptKeyError(f"data key {key_id} does not unwrap (its wrapped bytes were changed)") from e

    def destroy(self, kms_key: str | None) -> str:
        return "local: wrapped key overwritten and removed"


class AwsKmsKek:
    """AWS KMS through boto3. With ``key_arn``, one KMS key wraps every data key (shredding
    removes the wrapped copy); without, each scope gets its own KMS key, whose deletion is
    scheduled when the scope is shredded (the provider's deletion reference)."""

    name = "aws-kms"

    def __init__(self, *, key_arn: str | None = None, region: str | None = None, pending_days: int = 7,
                 client: Any = None) -> None:
        import boto3

        if not 7 <= pending_days <= 30:
            raise ValidationError("pending_days", "must be 7..30 (the KMS key deletion waiting period)")
        self.key_arn = key_arn
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.pending_days = pending_days
        self._client = client or boto3.client("kms", region_name=self.region)
        self.poolable = key_arn is not None  # a KMS key per scope is made for that scope, never ahead

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> AwsKmsKek:
        return cls(key_arn=settings.get("key_arn"), region=settings.get("region"),
                   pending_days=int(settings.get("pending_days", 7)))

    def settings(self) -> dict[str, Any]:
        return {"key_arn": self.key_arn, "region": self.region, "pending_days": self.pending_days}

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise CorruptKeyError(f"KMS cannot {what}: {code}") from e
            if code in ("NotFoundException", "KMSInvalidStateException", "AccessDeniedException", "DisabledException"):
                message = e.response.get("Error", {}).get("Message", "")
                raise WrongKekError(f"KMS cannot {what}: {code} ({message})") from e
            raise KeyStoreError(f"KMS cannot {what}: {code}") from e
        except BotoCoreError as e:
            raise KeyStoreError(f"KMS cannot {what}: {e}") from e

    def wrap(self, key_id: str, dek: bytes) -> tuple[bytes, str | None]:
        kms_key = self.key_arn
        if kms_key is None:
            meta = self._call("create a key", self._client.create_key,
                              Description=f"wormjournal data key scope {key_id}", KeyUsage="ENCRYPT_DECRYPT")
            kms_key = meta["KeyMetadata"]["Arn"]
        out = self._call("wrap a data key", self._client.encrypt, KeyId=kms_key, Plaintext=dek,
                         EncryptionContext={"wormjournal_key_id": key_id})
        return out["CiphertextBlob"], kms_key

    def unwrap(self, key_id: str, wrapped: bytes, kms_key: str | None) -> bytes:
        out = self._call("unwrap a data key", self._client.decrypt, CiphertextBlob=wrapped, KeyId=kms_key,
                         EncryptionContext={"wormjournal_key_id": key_id})
        plaintext: bytes = out["Plaintext"]  # boto3's responses are untyped
        return plaintext

    def destroy(self, kms_key: str | None) -> str:
        if self.key_arn is not None or kms_key is None:
            return f"aws-kms: wrapped key removed (KMS key {self.key_arn} wraps other keys and is kept)"
        try:
            out = self._call("schedule key deletion", self._client.schedule_key_deletion, KeyId=kms_key,
                             PendingWindowInDays=self.pending_days)
        except WrongKekError:
            # Scheduled already: a shred that a crash cut short after this call, finished now. The same deletion.
            out = self._call("describe a key", self._client.describe_key, KeyId=kms_key)["KeyMetadata"]
            if out.get("KeyState") != "PendingDeletion":
                raise
        when = out.get("DeletionDate")
        when_text = (when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(when, dt.datetime)
                     else str(when))
        return f"aws-kms: deletion of {kms_key} scheduled for {when_text}"
