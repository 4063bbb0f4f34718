"""Object names: every name in the store is built here, by pure functions.

The layout (FORMAT.md, "Object names")::

    journal.json                                            journal identity, written once
    keys/<key_id>.pem                                       public signing keys
    segments/stream=<s>/date=<YYYY-MM-DD>/seg-<n>.parquet  sealed events (hive-style)
    manifests/stream=<s>/<n>.note                          signed segment manifests
    checkpoints/stream=<s>/<tree_size>.note                signed checkpoints
    heads/<n>.note                                          signed journal heads (every stream's checkpoint)
    witness/<log>/<tree_size>.<key hash>.note               witnesses' cosignatures (log: heads or stream=<s>)
    index/stream=<s>/<kind>/<first>-<last>.parquet          derived lookup tables (roots signed in manifests)
    payloads/stream=<s>/<sha256>                            large payloads stored apart (named by their events)
    retention/policy/<n>.note                                retention policy changes (extend only, signed)
    .leases/stream=<s>.json                                 a writer's lease (S3): a working object, never listed
"""

from __future__ import annotations

import re

JOURNAL_OBJECT = "journal.json"
KEYS_PREFIX = "keys/"
SEGMENTS_PREFIX = "segments/"
MANIFESTS_PREFIX = "manifests/"
CHECKPOINTS_PREFIX = "checkpoints/"
INDEX_PREFIX = "index/"
PAYLOADS_PREFIX = "payloads/"
HEADS_PREFIX = "heads/"
WITNESS_PREFIX = "witness/"
RETENTION_POLICY_PREFIX = "retention/policy/"
# Writer leases (FORMAT.md 11b): mutable working objects. The leading dot keeps them out of every listing
# (storage.names), so the verifier, the lock audit and retention never take them for journal objects.
LEASES_PREFIX = ".leases/"
INDEX_KINDS = ("executions", "threads", "events", "tenants")
LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")  # journal.json's retention_mode and a policy's mode (FORMAT.md 9)
NUMBER_WIDTH = 12

STREAM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SEGMENT_RE = re.compile(
    r"segments/stream=(?P<stream>[^/]+)/date=(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})/seg-(?P<n>[0-9]{12})\.parquet"
)
_INDEX_RE = re.compile(
    r"index/stream=(?P<stream>[^/]+)/(?P<kind>executions|threads|events|tenants)/(?P<first>[0-9]{12})-(?P<last>[0-9]{12})\.parquet"
)
_PAYLOAD_RE = re.compile(r"payloads/stream=(?P<stream>[^/]+)/(?P<digest>[0-9a-f]{64})")
_POLICY_RE = re.compile(r"retention/policy/(?P<n>[0-9]{12})\.note")  # signed (format 2)
_POLICY_V1_RE = re.compile(r"retention/policy/(?P<n>[0-9]{12})\.json")  # unsigned (format 1): never in force
_LEASE_RE = re.compile(r"\.leases/stream=(?P<stream>[A-Za-z0-9][A-Za-z0-9._-]{0,63})\.json")
_HEAD_RE = re.compile(r"heads/(?P<n>[0-9]{12})\.note")
_COSIGNED_RE = re.compile(
    r"witness/(?:heads|stream=(?P<stream>[A-Za-z0-9][A-Za-z0-9._-]{0,63}))/(?P<n>[0-9]{12})\.(?P<key>[0-9a-f]{8})\.note"
)
_NUMBERED_RE = re.compile(r"(?P<kind>manifests|checkpoints)/stream=(?P<stream>[^/]+)/(?P<n>[0-9]{12})\.note")


def is_valid_stream(stream: str) -> bool:
    return STREAM_RE.fullmatch(stream) is not None


def _num(n: int) -> str:
    if n < 0 or n >= 10**NUMBER_WIDTH:
        raise ValueError(f"number out of range: {n}")
    return f"{n:0{NUMBER_WIDTH}d}"


def public_key(key_id: str) -> str:
    return f"{KEYS_PREFIX}{key_id}.pem"


def segment(stream: str, date: str, n: int) -> str:
    if not _DATE_RE.fullmatch(date):
        raise ValueError(f"bad partition date: {date!r}")
    return f"{SEGMENTS_PREFIX}stream={stream}/date={date}/seg-{_num(n)}.parquet"


def stream_segments_prefix(stream: str) -> str:
    return f"{SEGMENTS_PREFIX}stream={stream}/"


def payload(stream: str, digest: str) -> str:
    """A payload stored apart (FORMAT.md 3.5): named by the SHA-256 hex of its bytes."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"bad payload digest: {digest!r}")
    return f"{PAYLOADS_PREFIX}stream={stream}/{digest}"


def payloads_prefix(stream: str) -> str:
    return f"{PAYLOADS_PREFIX}stream={stream}/"


def parse_payload(name: str) -> tuple[str, str] | None:
    """(stream, digest) of a payload object's name, or None."""
    m = _PAYLOAD_RE.fullmatch(name)
    return (m["stream"], m["digest"]) if m else None


def manifest(stream: str, n: int) -> str:
    return f"{MANIFESTS_PREFIX}stream={stream}/{_num(n)}.note"


def manifests_prefix(stream: str) -> str:
    return f"{MANIFESTS_PREFIX}stream={stream}/"


def checkpoint(stream: str, tree_size: int) -> str:
    return f"{CHECKPOINTS_PREFIX}stream={stream}/{_num(tree_size)}.note"


def checkpoints_prefix(stream: str) -> str:
    return f"{CHECKPOINTS_PREFIX}stream={stream}/"


def index_object(stream: str, kind: str, first: int, last: int) -> str:
    """An index object covering segments ``first..last`` (inclusive) of ``stream``."""
    if kind not in INDEX_KINDS or last < first:
        raise ValueError(f"bad index object: {kind} {first}..{last}")
    return f"{INDEX_PREFIX}stream={stream}/{kind}/{_num(first)}-{_num(last)}.parquet"


def index_prefix(stream: str, kind: str) -> str:
    return f"{INDEX_PREFIX}stream={stream}/{kind}/"


def parse_index(name: str) -> tuple[str, str, int, int] | None:
    """(stream, kind, first, last) of an index object name, or None."""
    m = _INDEX_RE.fullmatch(name)
    return (m["stream"], m["kind"], int(m["first"]), int(m["last"])) if m else None


def parse_segment(name: str) -> tuple[str, str, int] | None:
    """(stream, date, number) of a segment object name, or None."""
    m = _SEGMENT_RE.fullmatch(name)
    return (m["stream"], m["date"], int(m["n"])) if m else None


def parse_numbered(name: str) -> tuple[str, str, int] | None:
    """(kind, stream, number) of a manifest or checkpoint name, or None."""
    m = _NUMBERED_RE.fullmatch(name)
    return (m["kind"], m["stream"], int(m["n"])) if m else None


def streams_from_names(names: list[str]) -> list[str]:
    """The streams named by manifest, checkpoint or segment objects."""
    found: set[str] = set()
    for name in names:
        parsed = parse_numbered(name)
        if parsed:
            found.add(parsed[1])
            continue
        seg = parse_segment(name)
        if seg:
            found.add(seg[0])
    return sorted(found)


def head(n: int) -> str:
    """Journal head ``n`` (FORMAT.md 8a)."""
    return f"{HEADS_PREFIX}{_num(n)}.note"


def parse_head(name: str) -> int | None:
    m = _HEAD_RE.fullmatch(name)
    return int(m["n"]) if m else None


def cosigned(stream: str | None, tree_size: int, key_hash: bytes) -> str:
    """A witness's cosigned checkpoint (FORMAT.md 8b): of the head log (``stream`` None) or of a stream."""
    log = "heads" if stream is None else f"stream={stream}"
    if stream is not None and not is_valid_stream(stream):
        raise ValueError(f"bad stream name: {stream!r}")
    return f"{WITNESS_PREFIX}{log}/{_num(tree_size)}.{key_hash.hex()}.note"


def parse_cosigned(name: str) -> tuple[str | None, int, bytes] | None:
    """(stream or None for the head log, tree size, witness key hash) of a cosigned checkpoint's name, or None."""
    m = _COSIGNED_RE.fullmatch(name)
    return (m["stream"], int(m["n"]), bytes.fromhex(m["key"])) if m else None


def retention_policy(n: int) -> str:
    """A retention policy object: a signed note (FORMAT.md 9)."""
    return f"{RETENTION_POLICY_PREFIX}{_num(n)}.note"


def parse_retention_policy(name: str) -> int | None:
    """The number of a retention policy object name, or None."""
    m = _POLICY_RE.fullmatch(name)
    return int(m["n"]) if m else None


def is_unsigned_retention_policy(name: str) -> bool:
    """Whether ``name`` is a format 1 (unsigned JSON) policy object, which no writer obeys any more."""
    return _POLICY_V1_RE.fullmatch(name) is not None


def lease(stream: str) -> str:
    """The lease object of ``stream``'s writer (FORMAT.md 11b)."""
    if not is_valid_stream(stream):
        raise ValueError(f"bad stream name: {stream!r}")
    return f"{LEASES_PREFIX}stream={stream}.json"


def parse_lease(name: str) -> str | None:
    """The stream of a lease object name, or None."""
    m = _LEASE_RE.fullmatch(name)
    return m["stream"] if m else None
