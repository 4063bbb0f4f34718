"""What an auditor brings to a verification besides the public keys: a saved checkpoint or manifest.

``verify --since FILE`` proves that the store extends what FILE committed to (FORMAT.md 10,
"Since"), and lets verification start there: segments before it may have expired.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, NoteError
from ..segments import merkle
from ..segments.manifest import Checkpoint, Manifest, checkpoint_origin
from ..segments.notes import VerifyKey, open_note, split_note
from .report import Finding


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A trusted point of one stream: the checkpoint tree of ``size`` segments has root ``root``."""

    kind: str  # "checkpoint" or "manifest"
    stream: str
    size: int
    root: bytes
    manifest_hash: bytes | None = None  # for a manifest: its hash (leaf size - 1)
    signed_by: str | None = None
    finding: Finding | None = None  # set when the file's signature does not verify

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "stream": self.stream, "tree_size": self.size, "root": self.root.hex(),
                "signed_by": self.signed_by}


def parse_anchor(data: bytes, journal_id: str, keys: Sequence[VerifyKey]) -> Anchor:
    """A saved checkpoint (C2SP note) or manifest of this journal. A file that is neither is a
    usage error; one whose signature does not verify under the trusted keys is a finding."""
    try:
        text, _ = split_note(data)
    except NoteError as e:
        raise ConfigError(f"--since: not a signed checkpoint or manifest ({e})") from e
    try:
        if text.startswith("wormjournal/manifest/"):
            m = Manifest.parse(text)
            if m.journal != journal_id:
                raise ConfigError(f"--since: the manifest is of journal {m.journal}, not {journal_id}")
            after = m.tree_after()
            anchor = Anchor("manifest", m.stream, m.segment + 1, merkle.frontier_root(after), m.manifest_hash())
        else:
            cp = Checkpoint.parse(text)
            prefix = f"wormjournal/{journal_id}/"
            if not cp.origin.startswith(prefix):
                raise ConfigError(f"--since: the checkpoint is for {cp.origin!r}, not journal {journal_id}")
            stream = cp.origin[len(prefix):]
            if cp.origin != checkpoint_origin(journal_id, stream):
                raise ConfigError(f"--since: {cp.origin!r} is not a checkpoint origin")
            anchor = Anchor("checkpoint", stream, cp.tree_size, cp.root_hash)
    except NoteError as e:
        raise ConfigError(f"--since: not a wormjournal checkpoint or manifest ({e})") from e
    try:
        _, key = open_note(data, list(keys))
    except NoteError as e:
        return dataclasses.replace(anchor, finding=Finding(
            "since_signature", f"the saved {anchor.kind} does not verify under the trusted keys: {e}",
            stream=anchor.stream))
    return dataclasses.replace(anchor, signed_by=key.key_id)


def check_extension(anchor: Anchor, roots: dict[int, bytes], leaves: list[bytes] | None, size: int,
                    root: bytes | None) -> tuple[list[Finding], dict[str, Any]]:
    """Whether the stream's current tree (``size`` segments, ``root``) extends the anchor.

    ``roots`` maps tree sizes to the roots recomputed from the store's manifests; ``leaves`` are
    the checkpoint tree's leaf hashes when every manifest from 0 is present (then an RFC 6962
    consistency proof is also made and checked, as an auditor without the store would).
    """
    info: dict[str, Any] = anchor.describe()
    if anchor.size > size:
        return [Finding("checkpoint_rollback", f"the store has {size} segments, fewer than the {anchor.size} the saved "
                        f"{anchor.kind} commits to (segments and checkpoints removed, or rolled back)",
                        stream=anchor.stream)], info
    got = roots.get(anchor.size)
    if got is None:
        return [Finding("since_unverifiable", f"the manifests before segment {anchor.size} are gone and none after it "
                        "carries a frontier that reaches back to the saved point", stream=anchor.stream)], info
    if got != anchor.root:
        return [Finding("since_inconsistent", f"the first {anchor.size} segments are not those the saved {anchor.kind} "
                        "commits to: history was rewritten", stream=anchor.stream)], info
    info["extends_to"] = size
    if leaves is not None and root is not None and len(leaves) == size:
        path = merkle.consistency_path(leaves, anchor.size)
        if not merkle.consistent(anchor.size, anchor.root, size, root, path):
            return [Finding("since_inconsistent", f"no consistency proof from size {anchor.size} to {size}",
                            stream=anchor.stream)], info
        info["consistency_proof"] = [h.hex() for h in path]
    return [], info
