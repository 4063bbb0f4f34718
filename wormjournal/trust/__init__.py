"""The trust core: every decision "are these bytes genuine?" is made here, once (DESIGN.md, Layers).

Fed bytes, it says what is trusted: the key history and which key may sign where
(:mod:`.keyring`), a stream's manifest chain and checkpoints (:mod:`.chain`). The verifier
collects its findings; every read path, the writer's recovery and proofs raise at the first
(:class:`.findings.Sink`). Only :mod:`.load` touches a store.
"""

from .chain import (
    ManifestChain,
    check_checkpoint_root,
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
    "check_checkpoint_root",
    "check_complete",
    "check_history",
    "check_names",
    "continue_chain",
    "key_name",
    "load_trust",
    "open_checkpoint",
    "open_manifest",
]
