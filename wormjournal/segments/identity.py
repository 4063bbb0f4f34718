"""journal.json: the journal's identity, written once at creation."""

from __future__ import annotations

import dataclasses
import json

from ..errors import ConfigError, NotFoundError
from ..retention.policy import RetentionPolicy
from ..storage import layout
from ..storage.base import ObjectReader

FORMAT_NAME = "wormjournal/1"


@dataclasses.dataclass(frozen=True)
class JournalIdentity:
    journal_id: str
    created: str
    key_name: str
    format: str = FORMAT_NAME
    # The Object Lock retention every object is written with; None for a store without locks.
    retention_mode: str | None = None
    retention_days: int | None = None

    def retention_policy(self) -> RetentionPolicy | None:
        if self.retention_mode is None:
            return None
        return RetentionPolicy(self.retention_mode, int(self.retention_days or 0))

    def encode(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes) -> JournalIdentity:
        try:
            raw = json.loads(data)
            ident = cls(**raw)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{layout.JOURNAL_OBJECT} is not a wormjournal identity: {e}") from e
        if ident.format != FORMAT_NAME:
            raise ConfigError(f"unsupported journal format {ident.format!r}; this is {FORMAT_NAME}")
        return ident


def read_identity(store: ObjectReader) -> JournalIdentity:
    try:
        data = store.get(layout.JOURNAL_OBJECT)
    except NotFoundError as e:
        raise NotFoundError(
            f"no journal in {getattr(store, 'url', store)}: {layout.JOURNAL_OBJECT} is missing",
            hint="create one with `wormjournal init STORE`",
        ) from e
    return JournalIdentity.decode(data)
