"""The trust core: every decision "are these bytes genuine?" is made here, once (DESIGN.md, Layers).

Fed bytes, it says what is trusted: the key history and which key may sign where
(:mod:`.keyring`), a stream's manifest chain and checkpoints (:mod:`.chain`), erasure receipts
(:mod:`.receipts`). The verifier collects its findings; every read path, the writer's recovery
and proofs raise at the first (:class:`.findings.Sink`). Two modules fetch bytes, through a
read-only ObjectReader, and feed them to those checks: :mod:`.load` (journal.json and the key
history) and :mod:`.partial` (a few row groups of a sealed segment, authenticated against its
signed Merkle root); nothing else here does IO.
"""

from .chain import (
    ManifestChain,
    chain_from_checkpoint,
    check_checkpoint_root,
    check_committed_length,
    check_complete,
    check_names,
    continue_chain,
    open_checkpoint,
    open_manifest,
)
from .findings import Finding, Sink
from .keyring import KeyRing, check_history
from .load import Trust, key_name, load_trust

__all__ = [
    "Finding",
    "KeyRing",
    "ManifestChain",
    "Sink",
    "Trust",
    "chain_from_checkpoint",
    "check_checkpoint_root",
    "check_committed_length",
    "check_complete",
    "check_history",
    "check_names",
    "continue_chain",
    "key_name",
    "load_trust",
    "open_checkpoint",
    "open_manifest",
]
