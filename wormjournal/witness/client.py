"""A writer's side of the witness protocol (FORMAT.md 8b): submit the journal's newest head, and the writer's
stream's newest checkpoint, to each witness with an RFC 6962 consistency proof from the size the witness has,
and store what it cosigns as ``witness/...`` objects.

:class:`WitnessRelay` does it in a background thread of the writer's process, after each seal and every
``interval`` seconds, so a witness that is down, slow or refusing never holds up an append or a seal: the lag
is kept in :meth:`WitnessRelay.status` and caught up once the witness answers again.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import http.client
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence

from ..errors import ConfigError, ConflictError, JournalError, NoteError, NotFoundError, WitnessError
from ..segments import merkle
from ..segments.cosign import Cosigner, add_checkpoint_body, cosignatures
from ..segments.head import Head
from ..segments.manifest import Checkpoint, Manifest
from ..segments.notes import split_note
from ..storage import layout
from ..storage.base import ObjectReader, Store

log = logging.getLogger(__name__)

SIZE_TYPE = "text/x.tlog.size"
TIMEOUT_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class WitnessConfig:
    """A witness a writer submits to: its URL (the submission prefix) and its cosigner key."""

    url: str
    cosigner: Cosigner

    @classmethod
    def parse(cls, spec: str) -> WitnessConfig:
        """``URL=VERIFIER_KEY`` (the key a C2SP ``cosignature/v1`` verifier key). Raises ConfigError."""
        url, sep, vkey = spec.partition("=")
        parts = urllib.parse.urlsplit(url)
        if not sep or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"a witness is URL=VERIFIER_KEY with an http(s) URL, not {spec[:80]!r}")
        try:
            return cls(url.rstrip("/"), Cosigner.from_vkey(vkey))
        except NoteError as e:
            raise ConfigError(f"witness {url}: {e}") from e


MAX_ANSWER = 1 << 16  # a witness answers with a few signature lines


def post(url: str, body: bytes, timeout: float = TIMEOUT_SECONDS) -> tuple[int, str, bytes]:
    """POST ``body`` to ``url``: (status, content type, body). The whole exchange takes at most ``timeout`` seconds
    (the connection is shut at the deadline, however slowly the witness drips bytes) and an answer of more than
    64 KiB is refused. Raises WitnessError when it cannot be reached or answers out of the protocol."""
    parts = urllib.parse.urlsplit(url)
    conn_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_type(parts.netloc, timeout=timeout)
    deadline = threading.Timer(timeout, _shut, (conn,))
    deadline.start()
    try:
        conn.request("POST", parts.path or "/", body=body, headers={"Content-Type": "text/plain; charset=utf-8"})
        resp = conn.getresponse()
        data = resp.read(MAX_ANSWER + 1)
        if len(data) > MAX_ANSWER:
            raise WitnessError(f"witness {url} answered with more than {MAX_ANSWER} bytes", resp.status)
        length = resp.getheader("Content-Length")
        if length is not None and (not length.isdigit() or int(length) != len(data)):
            raise WitnessError(f"witness {url} answered {len(data)} bytes, not its Content-Length {length[:20]!r}")
        return resp.status, resp.getheader("Content-Type", ""), data
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise WitnessError(f"witness {url} cannot be reached: {e}") from e
    finally:
        deadline.cancel()
        conn.close()


def _shut(conn: http.client.HTTPConnection) -> None:
    """The deadline of :func:`post`: reads and writes on the connection fail from now on."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def add_checkpoint(witness: WitnessConfig, note: bytes, size: int, old: int,
                   proof_from: Callable[[int], list[bytes]], timeout: float = TIMEOUT_SECONDS) -> tuple[str, int]:
    """Have ``witness`` cosign ``note`` (a checkpoint of ``size``), starting from ``old``, the size it is believed
    to have (0 when unknown; its answer 409 gives the right one). ``proof_from(m)`` is the consistency proof
    from size m. Returns the cosignature line and the timestamp. Raises WitnessError."""
    url = f"{witness.url}/add-checkpoint"
    text, _ = split_note(note)
    for _ in range(3):
        proof = proof_from(old) if 0 < old < size else []
        status, ctype, body = post(url, add_checkpoint_body(old, proof, note), timeout)
        if status == 409 and ctype.split(";")[0].strip() == SIZE_TYPE:
            text_size = body.decode("ascii", "replace").strip()
            if not text_size.isdigit() or len(text_size) > 20:
                raise WitnessError(f"witness {witness.url} answered 409 without a size", 409)
            theirs = int(text_size)
            if theirs > size:
                raise WitnessError(f"witness {witness.cosigner.name} has cosigned {theirs}, more than this store's "
                                   f"{size}: the store was rolled back, or another store forked from it", 409)
            if theirs == old:
                raise WitnessError(f"witness {witness.cosigner.name} answered 409 at its own size {old}", 409)
            old = theirs
            continue
        if status != 200:
            reason = body.decode("utf-8", "replace").strip()[:300]
            if status in (409, 422):
                reason += " (a fork: the witness holds a checkpoint this one does not extend)"
            raise WitnessError(f"witness {witness.cosigner.name} refused size {size} from {old} ({status}): {reason}",
                               status)
        lines = [line + "\n" for line in body.decode("utf-8", "replace").splitlines() if line]
        for line in lines:
            try:
                got = cosignatures(note + line.encode(), [witness.cosigner])
            except NoteError:
                continue  # not a signature line
            if witness.cosigner.name in got:
                return line, got[witness.cosigner.name]
        raise WitnessError(f"witness {witness.url} answered without a cosignature of its key on {text[:60]!r}", 200)
    raise WitnessError(f"witness {witness.url} kept changing its size", 409)


def newest_head(store: ObjectReader, after: int = -1) -> int:
    """The number of the newest head in the store (-1 for none), following the numbers from ``after`` (a head known
    to exist; -1: list the heads first)."""
    if after < 0:
        after = max((n for o in store.list(layout.HEADS_PREFIX) if (n := layout.parse_head(o.name)) is not None),
                    default=-1)
    while store.head(layout.head(after + 1)) is not None:
        after += 1
    return after


def head_proof(head: Callable[[int], Head], old: int, size: int) -> list[bytes]:
    """PROOF(old, size) of the head log, from head ``old``'s frontier and the heads from it (FORMAT.md 8b)."""
    leaves = [merkle.leaf_hash(head(n).head_hash()) for n in range(old, size)]
    return merkle.consistency_path_from(head(old).frontier, old, leaves)


def stream_proof(store: ObjectReader, stream: str, old: int, size: int) -> list[bytes]:
    """PROOF(old, size) of a stream's checkpoints, from manifest ``old``'s frontier and the manifests from it."""
    manifests = [Manifest.parse(split_note(store.get(layout.manifest(stream, n)))[0]) for n in range(old, size)]
    leaves = [merkle.leaf_hash(m.manifest_hash()) for m in manifests]
    return merkle.consistency_path_from(manifests[0].frontier, old, leaves)


def ask(store: ObjectReader, journal_id: str, witness: WitnessConfig) -> tuple[int, int]:
    """Submit the store's newest head to ``witness`` (an auditor's live check, which needs no write access to the
    store): returns the head log's size and the cosignature's time when the witness cosigns it, which it does only
    if the head extends every head it cosigned before. Raises WitnessError naming the witness's larger size (the
    store was rolled back) or the conflict (a fork), NotFoundError when the store has no head."""
    n = newest_head(store)
    if n < 0:
        raise NotFoundError("the store holds no journal head to ask a witness about")
    heads: dict[int, Head] = {}

    def head(k: int) -> Head:
        if k not in heads:
            heads[k] = Head.parse(split_note(store.get(layout.head(k)))[0], journal_id)
        return heads[k]

    _, when = add_checkpoint(witness, store.get(layout.head(n)), n + 1, n + 1, lambda old: head_proof(head, old, n + 1))
    return n + 1, when


@dataclasses.dataclass
class WitnessStatus:
    """Where one witness stands for this writer: the newest head log size it cosigned (this process saw), the
    newest head, the last error and since when the witness is behind."""

    url: str
    name: str
    cosigned: int = 0
    newest: int = 0
    error: str | None = None
    behind_since: float | None = None

    @property
    def lag(self) -> int:
        return max(0, self.newest - self.cosigned)


class WitnessRelay:
    """Submits the store's newest head (and ``stream``'s newest checkpoint) to witnesses, in the background."""

    def __init__(self, store: Store, journal_id: str, stream: str, witnesses: Sequence[WitnessConfig],
                 *, interval: float = 30.0, store_for: Callable[[], Store] | None = None) -> None:
        self.store = store
        self.journal_id = journal_id
        self.stream = stream
        self.witnesses = list(witnesses)
        self.interval = interval
        self._store_for = store_for or (lambda: store)
        self._status = {w.url: WitnessStatus(w.url, w.cosigner.name) for w in self.witnesses}
        self._sizes: dict[tuple[str, str], int] = {}  # (witness url, origin) -> the size it has, as last answered
        self._unknown: set[tuple[str, str]] = set()  # (witness url, origin) it answered 404 for
        self._heads: dict[int, Head] = {}
        self._newest_known = -1
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._round_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"witness-relay-{stream}", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """A seal stored a head: submit it soon."""
        self._wake.set()

    def status(self) -> list[WitnessStatus]:
        return [dataclasses.replace(s) for s in self._status.values()]

    def close(self, *, flush_seconds: float = 3.0) -> None:
        """Stop the thread, then one last round: ``flush_seconds`` at most in all, whatever the witnesses do (a round
        still running then is left to finish in the background, its thread a daemon). Never raises."""
        deadline = time.monotonic() + flush_seconds
        self._stop.set()
        self._wake.set()
        self._thread.join(flush_seconds)
        left = deadline - time.monotonic()
        if left > 0 and not self._thread.is_alive():
            last = threading.Thread(target=self._last_round, args=(left,), name=f"witness-last-{self.stream}",
                                    daemon=True)
            last.start()
            last.join(left)

    def _last_round(self, timeout: float) -> None:
        try:
            self.run_round(timeout=timeout)
        except Exception:  # noqa: BLE001 - closing the journal never fails for a witness
            log.exception("witness relay (stream %s): the last round failed", self.stream)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_round()
            except Exception:  # noqa: BLE001 - the relay never takes the writer down
                log.exception("witness relay (stream %s) failed; it tries again", self.stream)

    # -- one round ---------------------------------------------------------------------------------------------

    def _head(self, n: int) -> Head:
        head = self._heads.get(n)
        if head is None:
            head = Head.parse(split_note(self.store.get(layout.head(n)))[0], self.journal_id)
            if len(self._heads) > 4096:
                self._heads.clear()
            self._heads[n] = head
        return head


    def run_round(self, timeout: float | None = None) -> None:
        """Submit the newest head, and the stream's checkpoint it names, to every witness that has not cosigned
        them yet, each witness in a thread of its own (one that hangs or misbehaves holds up no other); store the
        cosignatures. Each request takes at most ``timeout`` seconds (TIMEOUT_SECONDS)."""
        timeout = TIMEOUT_SECONDS if timeout is None else timeout
        with self._round_lock:
            n = self._newest_known = newest_head(self.store, self._newest_known)
            if n < 0:
                return
            head = self._head(n)
            note = self.store.get(layout.head(n))
            with cf.ThreadPoolExecutor(len(self.witnesses), thread_name_prefix="witness-submit") as pool:
                for w in self.witnesses:
                    pool.submit(self._round_one, w, head, note, timeout)

    def _round_one(self, w: WitnessConfig, head: Head, note: bytes, timeout: float) -> None:
        st = self._status[w.url]
        size = head.number + 1
        st.newest = size
        try:
            self._submit(w, None, note, size, lambda old: head_proof(self._head, old, size), timeout)
            st.cosigned, st.error, st.behind_since = size, None, None
        except Exception as e:  # noqa: BLE001 - whatever a witness answers, the others and the writer go on
            st.error = str(e)
            st.behind_since = st.behind_since or time.time()
            fork = isinstance(e, WitnessError) and e.status in (409, 422)
            log.log(logging.ERROR if fork else logging.WARNING, "%s", e, exc_info=not isinstance(e, JournalError))
            return
        tip = head.tips().get(self.stream)
        if tip is not None:
            try:
                cp_note = self.store.get(layout.checkpoint(self.stream, tip.size))
                self._submit(w, self.stream, cp_note, tip.size,
                             lambda old: stream_proof(self.store, self.stream, old, tip.size), timeout)
            except Exception as e:  # noqa: BLE001 - the head is what protects the stream; this is a second view
                log.warning("stream %s, checkpoint %d: %s", self.stream, tip.size, e)

    def _submit(self, w: WitnessConfig, stream: str | None, note: bytes, size: int,
                proof_from: Callable[[int], list[bytes]], timeout: float) -> None:
        origin = Checkpoint.parse("\n".join(split_note(note)[0].split("\n")[:3]) + "\n").origin
        key = (w.url, origin)
        if key in self._unknown:
            return
        name = layout.cosigned(stream, size, w.cosigner.key_hash)
        if self._sizes.get(key) == size or self.store.head(name) is not None:
            self._sizes[key] = size
            return
        try:
            line, _ = add_checkpoint(w, note, size, self._sizes.get(key, 0), proof_from, timeout)
        except WitnessError as e:
            if e.status == 404 and stream is not None:
                self._unknown.add(key)  # a witness of the heads only: fine, the heads name this stream
                return
            raise
        self._sizes[key] = size
        try:
            self._store_for().put(name, note + line.encode())
        except ConflictError:
            pass  # another writer stored this witness's cosignature of the same checkpoint
