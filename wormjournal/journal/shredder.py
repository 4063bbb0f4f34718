"""Crypto-shredding for one stream's writer: destroy a scope's data keys, then append a signed erasure receipt
(FORMAT.md 3.2), crash-safe through the key store's shred intents.

The writer (:class:`~wormjournal.journal.writer.Journal`) owns a :class:`Shredder` and hands it what it needs
of the writer as callables: appending a library event, reading a stream, the trusted keys, the unsealed
records and the key that signs a receipt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from .. import steps
from ..errors import IntegrityError, JournalError, UnknownScopeError, ValidationError
from ..index import Reader
from ..retention.keystore import KeyStore, ShredIntent
from ..retention.shred import (
    RECEIPT_EXECUTION,
    RECEIPT_TYPE,
    ErasureReceipt,
    check_receipt,
    count_key_uses,
    make_receipt,
    receipt_payload,
)
from ..segments.notes import SigningKey, VerifyKey
from ..storage.base import Store

log = logging.getLogger(__name__)


class Shredder:
    """Shreds for the writer of ``stream``.

    ``append`` appends one library event and returns its seq; ``reader(stream)`` reads a stream (this one with
    its unsealed events); ``unsealed()`` gives the records not sealed yet; ``receipt_key()`` the key that signs
    a receipt (the one the next segment is sealed with); ``forget(key_id)`` drops a destroyed key from the
    write path.
    """

    def __init__(self, store: Store, keystore: KeyStore, stream: str, *,
                 append: Callable[[Mapping[str, Any]], int], reader: Callable[[str], Reader],
                 trusted_keys: Callable[[], list[VerifyKey]], unsealed: Callable[[], pa.Table],
                 receipt_key: Callable[[], SigningKey], forget: Callable[[str], None]) -> None:
        self.store = store
        self.keystore = keystore
        self.stream = stream
        self._append = append
        self._reader = reader
        self._trusted_keys = trusted_keys
        self._unsealed = unsealed
        self._receipt_key = receipt_key
        self._forget = forget
        self._lock = threading.Lock()

    def shred(self, *, subject: str | None = None, thread: str | None = None, execution: str | None = None,
              tenant: str | None = None, reason: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> ErasureReceipt:
        """See :meth:`wormjournal.Journal.shred`."""
        given = {k: v for k, v in (("subject", subject), ("thread", thread), ("execution", execution),
                                   ("tenant", tenant)) if v is not None}
        if len(given) != 1:
            raise ValidationError("scope", "give exactly one of subject, thread, execution or tenant")
        ((scope, value),) = given.items()
        # Crash-safe: the intent is noted before any key is destroyed and forgotten once the receipt is noted;
        # whichever step a crash comes after, the next open (or shred of the scope) finishes it.
        with self._lock, self.keystore.shred_lock():
            intent = self.keystore.begin_shred(scope, value, reason)
            if intent.stream not in (None, self.stream):
                raise JournalError(f"an interrupted shred of this {scope} was appending its erasure receipt to stream "
                                   f"{intent.stream}", hint=f"open stream {intent.stream}: its writer finishes it")
            return self._finish(intent, progress)

    def finish_interrupted(self) -> None:
        """Finish the shreds of the key store that a crash cut short (at open). One whose receipt another
        stream's writer was appending is left to that writer, which alone can tell whether it did."""
        mine = (None, self.stream)
        if not any(i.stream in mine for i in self.keystore.pending_shreds()):
            return
        with self.keystore.shred_lock():  # a shred under way elsewhere finishes first: it may be this one
            for intent in self.keystore.pending_shreds():
                if intent.stream not in mine:
                    continue
                try:
                    result = self._finish(intent)
                except UnknownScopeError as e:  # nothing was ever destroyable: nothing to report either
                    self.keystore.end_shred(intent)
                    log.warning("dropped the interrupted shred of %s %s: %s", intent.scope, intent.scope_ref, e)
                    continue
                log.warning("finished the shred of %s %s that a crash interrupted: erasure receipt at seq %s of "
                            "stream %s", intent.scope, intent.scope_ref, result.seq, self.stream)

    def _finish(self, intent: ShredIntent, progress: Callable[[int, int], None] | None = None) -> ErasureReceipt:
        """Destroy the scope's data keys (again: idempotent), append its erasure receipt unless this stream
        holds it already (appended before a crash), note it in the tombstones, forget the intent. The key
        store's shred lock is held."""
        destroyed = self.keystore.destroy_pending(intent)
        steps.reached("shred.keys_destroyed")
        for info in destroyed.keys:
            self._forget(info.key_id)
        if not destroyed.keys:
            self.keystore.end_shred(intent)
            raise UnknownScopeError(f"no data key for {intent.scope} {intent.scope_ref!r} was ever written whole")
        pending = [k for k in destroyed.keys if k.receipt_seq is None]
        if not pending:  # shredded before, and its receipt is in the journal
            self.keystore.end_shred(intent)
            done = destroyed.keys[0]
            return self._earlier_receipt(done.receipt_seq, done.receipt_stream)
        key_ids = sorted(k.key_id for k in pending)
        result = self._receipt_naming(key_ids) if intent.stream == self.stream else None
        if result is None:
            intent = self.keystore.claim_shred(intent, self.stream)  # from here on, only this stream decides
            unsealed = self._unsealed().column("payload_key_id").to_pylist()
            affected = count_key_uses(self.store, key_ids, unsealed, progress)
            receipt = make_receipt(intent.scope, intent.scope_ref, pending, affected, self.keystore.provider.name,
                                   intent.reason)
            event = {"event_type": RECEIPT_TYPE, "execution_id": RECEIPT_EXECUTION,
                     "payload": receipt_payload(receipt, self._receipt_key()), "key_scope": "none"}
            result = ErasureReceipt(self._append(event), receipt)
            steps.reached("shred.receipt_appended")
            log.info("shredded %s %s: %d key(s), %d event(s), receipt seq %d", intent.scope, intent.scope_ref,
                     len(key_ids), affected, result.seq)
        assert result.seq is not None
        self.keystore.record_receipt(key_ids, result.seq, self.stream)
        steps.reached("shred.receipt_recorded")
        self.keystore.end_shred(intent)
        steps.reached("shred.done")
        return result

    def _earlier_receipt(self, seq: int | None, stream: str | None = None) -> ErasureReceipt:
        """The receipt at ``seq`` of ``stream`` (this one by default: where receipts went before they named
        their stream), as a repeated shred returns it."""
        stream = stream or self.stream
        for e in self._reader(stream).events(RECEIPT_EXECUTION):  # the receipts form one execution: an index lookup
            if e.seq == seq:
                return ErasureReceipt(seq, check_receipt(e.payload, self._trusted_keys()), repeated=True)
        raise IntegrityError(f"the erasure receipt at seq {seq} of stream {stream} is not in the journal", seq=seq)

    def _receipt_naming(self, key_ids: list[str]) -> ErasureReceipt | None:
        """The erasure receipt in this stream (sealed or in the WAL) that names one of ``key_ids``, or None."""
        wanted = set(key_ids)
        for e in self._reader(self.stream).events(RECEIPT_EXECUTION):
            if e.event_type == RECEIPT_TYPE:
                receipt = check_receipt(e.payload, self._trusted_keys())
                if wanted & set(receipt["key_ids"]):
                    return ErasureReceipt(e.seq, receipt, repeated=True)
        return None
