"""wormjournal: a file-based WORM journal for compliance archiving of AI-agent run history.

>>> from wormjournal import Journal
"""

from .errors import (
    ConfigError,
    ConflictError,
    CorruptKeyError,
    HandlerError,
    IndexDamaged,
    IntegrityError,
    JournalError,
    KeyRetiredError,
    KeyStoreError,
    KeyStoreMissingError,
    LeaseHeldError,
    LeaseLostError,
    LockedError,
    NoteError,
    NotFoundError,
    PageLayoutError,
    ProofError,
    RetentionError,
    StorageError,
    UnknownKeyError,
    UnknownScopeError,
    ValidationError,
    WitnessError,
    WrongKekError,
)
from .events import EventType, StoredEvent
from .index import Event, ExecutionSummary, Reader, ResumePoint
from .index.follow import EventFilter
from .journal import Journal, JournalConfig
from .payload import decode_payload
from .retention.kek import AwsKmsKek, LocalKek
from .retention.keystore import KeyStore
from .retention.shred import ErasureReceipt
from .subscriptions import ALL_STREAMS, Subscription
from .verify import VerifyReport, verify_store
from .verify.proof import Proof, check_proof, make_proof

__version__ = "0.1.0"

__all__ = [
    "ALL_STREAMS",
    "EventFilter",
    "HandlerError",
    "Subscription",
    "AwsKmsKek",
    "CorruptKeyError",
    "ErasureReceipt",
    "KeyStore",
    "KeyStoreError",
    "KeyStoreMissingError",
    "LocalKek",
    "UnknownKeyError",
    "UnknownScopeError",
    "WrongKekError",
    "WitnessError",
    "ConfigError",
    "IndexDamaged",
    "PageLayoutError",
    "KeyRetiredError",
    "NoteError",
    "RetentionError",
    "ConflictError",
    "Event",
    "EventType",
    "ExecutionSummary",
    "IntegrityError",
    "Journal",
    "JournalConfig",
    "JournalError",
    "LeaseHeldError",
    "LeaseLostError",
    "LockedError",
    "NotFoundError",
    "Reader",
    "ResumePoint",
    "StorageError",
    "StoredEvent",
    "ValidationError",
    "VerifyReport",
    "Proof",
    "ProofError",
    "check_proof",
    "make_proof",
    "decode_payload",
    "verify_store",
]
