"""The journal's configuration: one frozen dataclass, validated once."""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from ..events import DEFAULT_MAX_EVENT_BYTES


@dataclasses.dataclass(frozen=True)
class JournalConfig:
    """How a writer behaves. None of these change the stored format.

    Sealing happens automatically when the unsealed events reach
    ``seal_max_events`` or ``seal_max_bytes`` of WAL, or when the oldest of them
    is ``seal_max_age_seconds`` old (None turns the age rule off), in the seal
    worker process (``seal_worker``).

    On a store that is not a local directory (S3) the writer holds a lease on its
    stream (FORMAT.md 11b); it checks the lease before every seal and, in the
    background, every ``lease_check_seconds`` (None: before seals only). Once the
    lease is lost, appends raise LeaseLostError before writing anything.
    """

    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    # A payload whose stored bytes (compressed, encrypted) are longer is stored apart, in an object of its own named
    # by its SHA-256 (FORMAT.md 3.5), so that a segment's rows stay small whatever the events hold.
    inline_payload_bytes: int = 256 << 10
    seal_max_events: int = 100_000
    seal_max_bytes: int = 256 << 20
    seal_max_age_seconds: float | None = 600.0
    segment_max_events: int = 1_000_000
    row_group_rows: int = 2048  # a power of two: a Merkle block (FORMAT.md 5)
    # The most rows per Parquet page, a power of two (FORMAT.md 5, "Pages"): a lookup reads the pages that hold its
    # rows, so smaller pages read fewer bytes (scripts/bench_lookup.py --page-rows), but take more space and
    # decode slower for whatever reads whole segments (verify, queries). A 13,000-row segment of the lookup
    # bench decodes (C decoder) in 21 ms with pages of 16 rows, 16 of 32, 14 of 64, 12 of 128, and takes 45%,
    # 22% and 9% more bytes than with 128. Executions spread over many segments (1M events, each execution's 100
    # over about 47 segments) read 0.39% of the store per lookup with 128 rows, 0.057% with 16 (p50 22 -> 16 ms).
    page_rows: int = 128
    # The fewest rows per page: a seal picks, per segment, about 8 times the mean run of rows of its executions,
    # from min_page_rows to page_rows (segments.table.page_rows_for), so executions open over many segments are
    # read a small page per segment; min_page_rows = page_rows fixes the size.
    min_page_rows: int = 16
    zstd_level: int = 3
    # Payloads this large are zstd-compressed one by one; smaller ones by the segment's pages.
    compress_min_bytes: int = 4096
    # Whose data key encrypts a payload when the event does not say (append(..., key_scope=)):
    # "subject" (events with a subject_id), "thread", "execution", "tenant", or None (plaintext).
    key_scope: str | None = "subject"
    # How often a writer checks, in the background, that its lease is still its own (one HEAD each time).
    lease_check_seconds: float | None = 5.0
    # Automatic seals run in a process of their own that the journal starts (and starts again if it dies), so
    # that appends never wait for them; False seals in the appending thread. A store another process cannot
    # open alike (an S3Store given its own client, a custom Store) always seals in the appending thread.
    seal_worker: bool = True
    # WAL files the seal worker may have waiting, each up to seal_max_events or seal_max_bytes, before an append
    # waits for it: a worker slower than the appends may fall this far behind, never further (disk, recovery time).
    seal_backlog_files: int = 4
    # Witnesses (FORMAT.md 8b), each "URL=VERIFIER_KEY" (a C2SP cosignature/v1 verifier key): after each seal the
    # writer submits the newest journal head and its stream's checkpoint to each, in the background, and stores
    # their cosignatures in the store. A witness that is down never stops appends or seals; it is tried again every
    # witness_interval_seconds and caught up (Journal.witness_status() says how far behind it is).
    witnesses: tuple[str, ...] = ()
    witness_interval_seconds: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_event_bytes", "inline_payload_bytes",
                     "seal_max_events", "seal_max_bytes", "segment_max_events", "row_group_rows",
                     "page_rows", "min_page_rows", "seal_backlog_files"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if self.row_group_rows & (self.row_group_rows - 1):
            # Each row group must be a complete Merkle subtree (FORMAT.md, section 5).
            raise ConfigError(f"row_group_rows must be a power of two, not {self.row_group_rows}")
        if self.page_rows & (self.page_rows - 1):
            raise ConfigError(f"page_rows must be a power of two, not {self.page_rows}")
        if self.min_page_rows & (self.min_page_rows - 1):
            raise ConfigError(f"min_page_rows must be a power of two, not {self.min_page_rows}")
        if self.seal_max_age_seconds is not None and not self.seal_max_age_seconds > 0:
            raise ConfigError(f"seal_max_age_seconds must be positive or None, not {self.seal_max_age_seconds!r}")
        if self.lease_check_seconds is not None and not self.lease_check_seconds > 0:
            raise ConfigError(f"lease_check_seconds must be positive or None, not {self.lease_check_seconds!r}")
        if not isinstance(self.compress_min_bytes, int) or self.compress_min_bytes < 0:
            raise ConfigError(f"compress_min_bytes must be >= 0, not {self.compress_min_bytes!r}")
        if self.key_scope not in (None, "subject", "thread", "execution", "tenant"):
            raise ConfigError(f"key_scope must be subject, thread, execution, tenant or None, not {self.key_scope!r}")
        if isinstance(self.witnesses, str) or not all(isinstance(w, str) for w in self.witnesses):
            raise ConfigError("witnesses is a tuple of 'URL=VERIFIER_KEY' strings")
        if not self.witness_interval_seconds > 0:
            raise ConfigError(f"witness_interval_seconds must be positive, not {self.witness_interval_seconds!r}")
        if not 1 <= self.zstd_level <= 22:
            raise ConfigError(f"zstd_level must be 1..22, not {self.zstd_level}")
