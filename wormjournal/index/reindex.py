"""Rebuild the index of a store from its segments alone (``wormjournal reindex``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ..segments.notes import VerifyKey
from ..storage import layout
from ..storage.base import Store
from . import build
from .reader import Reader


@dataclasses.dataclass
class ReindexResult:
    stream: str
    segments: int
    indexed: int  # segments whose index objects were missing and are now written
    runs: list[str]


def reindex_store(store: Store, *, public_keys: Sequence[VerifyKey] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[ReindexResult]:
    """Write every missing index object of every stream, then the missing runs.

    Manifests are signature-checked first (with ``public_keys``, or the store's
    keys), so the index is only ever built from sealed segments. Index objects
    already present are kept (the store is write-once; readers check what they use).
    Raises IntegrityError on a manifest that does not verify.
    """
    names = [info.name for info in store.list(layout.MANIFESTS_PREFIX)]
    results = []
    streams = layout.streams_from_names(names)
    total = len(names)
    done = 0
    for stream in streams:
        reader = Reader(store, stream=stream, public_keys=public_keys)
        count = reader.refresh()
        manifests = [reader.manifest(n) for n in range(count)]

        def step(k: int) -> None:
            nonlocal done
            done += k
            if progress is not None:
                progress(done, total)

        indexed, runs = build.reindex(
            store, journal_id=reader.identity.journal_id, stream=stream,
            manifests=[(m.segment, m.object, m.object_size, m.object_sha256.hex()) for m in manifests], progress=step,
        )
        results.append(ReindexResult(stream, count, indexed, runs))
    return results
