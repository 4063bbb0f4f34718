"""Journal heads (FORMAT.md 8a, verification step 12): every stream's latest checkpoint, in a chain of signed
notes that writers extend without a coordinator. What the verifier says of a store whose streams were rolled
back, deleted or rewritten, and of heads removed, replaced, forged or forked."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from wormjournal.errors import NoteError
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal.keys import load_keys
from wormjournal.segments import merkle
from wormjournal.segments.head import Head, StreamTip, head_origin
from wormjournal.segments.notes import SigningKey, split_note
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.verify import verify_store

from conftest import History, StorePaths, build_history, copy_history, forge_seal, history_events, overwrite

CFG = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)


def kinds(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.kind for f in report.findings}


def heads_of(store: Path) -> list[Head]:
    s = LocalStore(store)
    journal_id = json.loads(s.get(layout.JOURNAL_OBJECT))["journal_id"]
    return [Head.parse(split_note(s.get(o.name))[0], journal_id) for o in s.list(layout.HEADS_PREFIX)]


def add_stream(h: History, stream: str, seals: int = 2) -> None:
    with Journal.open(h.paths.store, key_dir=h.paths.keys, stream=stream, config=CFG) as j:
        for s in range(seals):
            for kind, exec_id, payload, fields in history_events(5, start=100 + 5 * s):
                j.append(kind, exec_id, payload, **fields)
            j.seal()


def remove_stream(store: Path, stream: str) -> None:
    for prefix in ("segments", "manifests", "checkpoints", "index", "payloads"):
        shutil.rmtree(store / prefix / f"stream={stream}", ignore_errors=True)


def signing_key(h: History) -> SigningKey:
    return load_keys(h.paths.keys, h.journal_id)[0]


def write_head(h: History, head: Head, key: SigningKey | None = None) -> None:
    path = h.paths.store / layout.head(head.number)
    data = head.sign(key or signing_key(h))
    if path.exists():
        overwrite(path, data)
    else:
        path.write_bytes(data)


@pytest.fixture
def two_streams(history: History) -> History:
    """The 4-segment history of stream main, and stream side with 2 segments sealed after it."""
    add_stream(history, "side")
    return history


def test_every_seal_writes_a_head_naming_each_streams_latest_checkpoint(two_streams: History) -> None:
    heads = heads_of(two_streams.paths.store)
    assert [hd.number for hd in heads] == list(range(6))  # 4 seals of main, 2 of side
    assert [t.stream for t in heads[3].streams] == ["main"]
    newest = heads[-1]
    cps = {s.stream: s for s in two_streams.verify().streams}
    assert {t.stream: (t.size, t.root.hex()) for t in newest.streams} == {
        s: (cps[s].checkpoint_size, cps[s].checkpoint_root) for s in ("main", "side")}
    # Each head extends the head log of the ones before it: its frontier, and the checkpoint lines it carries.
    frontier: list[bytes] = []
    for hd in heads:
        assert list(hd.frontier) == frontier
        frontier = hd.tree_after()
        assert hd.checkpoint().root_hash == merkle.frontier_root(frontier)
    report = two_streams.verify()
    assert report.ok, report.findings
    assert report.head is not None and report.head["heads"] == 6 and not report.notices


def test_tail_rollback_of_a_stream_is_a_finding(two_streams: History) -> None:
    """The issue's first attack: the newest segment of a stream removed with its manifest and checkpoint."""
    store = two_streams.paths.store
    m = two_streams.manifests[3]
    for path in (store / m.object, store / layout.manifest("main", 3), store / layout.checkpoint("main", 4)):
        path.unlink()
    report = two_streams.verify()
    assert not report.ok
    rollback = [f for f in report.findings if f.kind == "head_rollback"]
    assert rollback and rollback[0].stream == "main" and "4 segments" in rollback[0].message


def test_a_deleted_stream_is_a_finding(two_streams: History) -> None:
    remove_stream(two_streams.paths.store, "side")
    report = two_streams.verify()
    assert kinds(report) == {"head_stream_missing"}
    assert report.findings[0].stream == "side"


def test_a_deleted_retention_stream_is_a_finding(history: History) -> None:
    add_stream(history, "retention", seals=1)
    remove_stream(history.paths.store, "retention")
    assert kinds(history.verify()) == {"head_stream_missing"}


def test_heads_removed(two_streams: History, tmp_path: Path) -> None:
    """The newest heads removed with the stream they name: the heads before them do not name it, so the stream's
    removal goes unseen; what is seen is that its segments are gone from heads that a witness cosigned (see
    test_witness). Every head removed, from a journal that writes heads: a finding. One in the middle: a gap."""
    store = two_streams.paths.store
    every = copy_history(two_streams, tmp_path / "every")
    shutil.rmtree(every.paths.store / "heads")
    assert kinds(every.verify()) == {"head_missing"}
    middle = copy_history(two_streams, tmp_path / "middle")
    (middle.paths.store / layout.head(2)).unlink()
    report = middle.verify()
    assert kinds(report) == {"head_missing"} and "2 to 2" in report.findings[0].message
    # The first heads gone (expired with the checkpoints of their time): the newest still names every stream.
    first = copy_history(two_streams, tmp_path / "first")
    for n in (0, 1, 2):
        (first.paths.store / layout.head(n)).unlink()
    report = first.verify()
    assert report.ok and any("heads 0 to 2 are gone" in n for n in report.notices)
    remove_stream(first.paths.store, "side")
    assert kinds(first.verify()) == {"head_stream_missing"}
    assert (store / layout.head(5)).exists()


def test_an_older_journal_without_heads_verifies_with_a_notice(history: History) -> None:
    """A journal created before format 5 (journal.json's format wormjournal/1) that no newer writer sealed."""
    store = history.paths.store
    shutil.rmtree(store / "heads")
    ident = (store / "journal.json").read_bytes()
    assert b'"format":"wormjournal/2"' in ident
    # Build one with the format 1 identity: the key history pins journal.json, so create it that way.
    from wormjournal.journal import writer as writer_mod
    from wormjournal.segments import identity as identity_mod

    old = dataclasses.replace(history.paths, store=store.parent / "old", keys=store.parent / "oldkeys")
    orig = writer_mod.FORMAT_HEADS
    writer_mod.FORMAT_HEADS = identity_mod.FORMAT_NAME  # type: ignore[misc]
    try:
        h = build_history(old, segments=2)
    finally:
        writer_mod.FORMAT_HEADS = orig  # type: ignore[misc]
    assert (h.paths.store / layout.head(1)).exists()  # an older journal sealed by this writer gets heads
    shutil.rmtree(h.paths.store / "heads")
    report = h.verify()
    assert report.ok, report.findings
    assert any("no journal head" in n for n in report.notices)


def test_a_head_that_drops_or_shrinks_a_stream_is_a_finding(two_streams: History) -> None:
    """A head signed with the journal's own key that takes back what the head before it said."""
    heads = heads_of(two_streams.paths.store)
    newest = heads[-1]
    dropped = newest.next(newest.time, tuple(t for t in newest.streams if t.stream != "side"))
    write_head(two_streams, dropped)
    assert kinds(two_streams.verify()) == {"head_regress"}
    main = newest.tips()["main"]
    shrunk = newest.next(newest.time, (StreamTip("main", main.size - 1, main.root), newest.tips()["side"]))
    write_head(two_streams, shrunk)
    assert "head_regress" in kinds(two_streams.verify())


def test_a_head_naming_another_history_is_a_finding(two_streams: History) -> None:
    """A history rewritten with the real key shows as the heads' roots against the store's manifests: here a head
    whose root for main differs (what a rewrite leaves when the heads before it are kept)."""
    newest = heads_of(two_streams.paths.store)[-1]
    other = newest.next(newest.time, (StreamTip("main", 4, b"\x07" * 32), newest.tips()["side"]))
    write_head(two_streams, other)
    assert kinds(two_streams.verify()) >= {"head_inconsistent"}


def test_replaced_forged_and_forked_heads(two_streams: History, tmp_path: Path) -> None:
    heads = heads_of(two_streams.paths.store)
    # Signed by a key the journal does not have.
    forged = copy_history(two_streams, tmp_path / "forged")
    write_head(forged, heads[2], SigningKey.generate(signing_key(two_streams).name))
    assert kinds(forged.verify()) == {"head_signature"}
    # A head whose frontier is another tree (a fork of the head log): its successor's link breaks too.
    forked = copy_history(two_streams, tmp_path / "forked")
    fake = Head(heads[2].journal_id, 2, heads[2].time, (b"\x01" * 32,), heads[2].streams)
    write_head(forked, fake)
    assert kinds(forked.verify()) == {"head_chain"}
    # Not a head: a checkpoint of the head log without its lines, and a head of another number.
    bare = copy_history(two_streams, tmp_path / "bare")
    write_head_bytes = signing_key(two_streams).sign_note(heads[2].checkpoint().text())
    overwrite(bare.paths.store / layout.head(2), write_head_bytes)
    assert "head_format" in kinds(bare.verify())
    renumbered = copy_history(two_streams, tmp_path / "renumbered")
    overwrite(renumbered.paths.store / layout.head(2), heads[3].sign(signing_key(two_streams)))
    assert "head_identity" in kinds(renumbered.verify())
    # A planted name under heads/.
    planted = copy_history(two_streams, tmp_path / "planted")
    (planted.paths.store / "heads" / "latest.note").write_bytes(b"x")
    assert kinds(planted.verify()) == {"unexpected_object"}


def test_a_head_signed_by_a_stolen_old_key_cannot_name_segments_after_its_retirement(tmp_store: StorePaths) -> None:
    h = build_history(tmp_store, segments=2)
    old = signing_key(h)
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        j.rotate_key()
        for kind, exec_id, payload, fields in history_events(4, start=50):
            j.append(kind, exec_id, payload, **fields)
        j.seal()
    assert verify_store(h.store).ok
    forge_seal(h.store, old, [("node_started", "run-alpha", {"thief": 1})])
    findings = verify_store(h.store).findings
    assert "key_validity" in {f.kind for f in findings if f.object and f.object.startswith("heads/")}


def test_a_writer_that_stopped_before_its_head_writes_it_when_it_reopens(history: History) -> None:
    newest = layout.head(3)
    (history.paths.store / newest).unlink()
    report = history.verify()
    assert report.ok and any("names 3 of its 4" in n for n in report.notices)
    with Journal.open(history.paths.store, key_dir=history.paths.keys, config=CFG):
        pass
    assert (history.paths.store / newest).exists()
    report = history.verify()
    assert report.ok and not report.notices


def test_racing_writers_of_many_streams_lose_no_stream(tmp_store: StorePaths) -> None:
    """Six writers, a stream each, seal at once: the heads are numbered without a gap, each extends the one before,
    and the newest names every stream at its last checkpoint."""
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, config=CFG):
        pass
    streams = [f"w{i}" for i in range(6)]
    barrier = threading.Barrier(len(streams))
    errors: list[BaseException] = []

    def run(stream: str) -> None:
        try:
            with Journal.open(tmp_store.store, key_dir=tmp_store.keys, stream=stream, config=CFG) as j:
                barrier.wait()
                for s in range(4):
                    j.append("node_started", f"run-{stream}", {"s": s})
                    j.seal()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    heads = heads_of(tmp_store.store)
    assert [hd.number for hd in heads] == list(range(len(heads))) and len(heads) == 24
    assert {t.stream: t.size for t in heads[-1].streams} == {s: 4 for s in streams}
    report = verify_store(tmp_store.store)
    assert report.ok, report.findings


# -- the head's text (FORMAT.md 8a) -----------------------------------------------------------------------------


def test_head_text_parses_strictly() -> None:
    jid = "01J0000000000000000000TEST"
    tip = StreamTip("main", 3, bytes(range(32)))
    head = Head.first(jid, "2024-06-10T06:15:00.000000Z", (tip,)).next("2024-06-10T06:16:00.000000Z", (tip,))
    text = head.text()
    assert Head.parse(text, jid) == head
    assert text.splitlines()[:2] == [head_origin(jid), "2"]
    root = base64.b64decode(text.splitlines()[2])
    assert root == merkle.frontier_root(head.tree_after())
    bad = [
        text.replace("time 2024-06-10T06:16:00.000000Z", "time 2024-06-10T06:16:00Z"),  # not canonical
        text.replace("stream main 3", "stream main 03"),
        text.replace("\nstream main", "\nstream bad!name"),
        text.replace(text.splitlines()[2], base64.b64encode(b"\x00" * 32).decode()),  # another root
        text + "stream zzz 1 " + "00" * 32 + "\n",  # the root no longer covers the lines
        text.replace(head_origin(jid), head_origin(jid) + "/main"),
        text.replace("\n2\n", "\n1\n"),  # another number: the frontier no longer fits
        "\n".join(text.splitlines()[:5]) + "\n",  # no stream: lines too few
    ]
    for b in bad:
        with pytest.raises(NoteError):
            Head.parse(b, jid)
    with pytest.raises(NoteError):
        Head(jid, 0, "t", (), (tip, tip))  # a stream twice


def test_a_writer_that_seals_rarely_beside_a_busy_one_is_named_by_the_next_head(tmp_store: StorePaths) -> None:
    """The busy stream writes more heads than a writer would try numbers one by one: the quiet writer's seal still
    writes a head naming it (it lists the heads when its number is taken)."""
    with Journal.create(tmp_store.store, key_dir=tmp_store.keys, stream="quiet", config=CFG) as quiet, \
            Journal.open(tmp_store.store, key_dir=tmp_store.keys, stream="busy", config=CFG) as busy:
        quiet.append("node_started", "q", {"r": 0})
        quiet.seal()
        for i in range(70):
            busy.append("node_started", "b", {"i": i})
            busy.seal()
        quiet.append("node_started", "q", {"r": 1})
        quiet.seal()
    newest = heads_of(tmp_store.store)[-1]
    assert newest.tips()["quiet"].size == 2 and newest.tips()["busy"].size == 70
    report = verify_store(tmp_store.store)
    assert report.ok and not report.notices, (report.findings, report.notices)


def test_planted_non_files_under_heads_are_reported_not_read(history: History) -> None:
    fifo = history.paths.store / "heads" / "pipe"
    os.mkfifo(fifo)
    named = history.paths.store / layout.head(9)
    os.mkfifo(named)
    report = history.verify()  # neither is waited on: the first is not a head's name, the second not a file
    assert {f.kind for f in report.findings} == {"unexpected_object", "head_format"}
