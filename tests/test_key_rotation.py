"""Key rotation (FORMAT.md 6.1) and verification from a saved checkpoint (FORMAT.md 10, Since, horizon)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wormjournal import Reader
from wormjournal.cli import main
from wormjournal.errors import IntegrityError, KeyRetiredError
from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal import keys as keys_mod
from wormjournal.segments.keyhistory import entry_name
from wormjournal.segments.notes import VerifyKey
from wormjournal.storage import layout
from wormjournal.storage.local import LocalStore
from wormjournal.trust import load_trust
from wormjournal.verify import verify_store
from wormjournal.verify.proof import check_proof, make_proof

from conftest import History, forge_seal, make_writable

CFG = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)


def add_segment(h: History, n: int = 3, tag: str = "later") -> None:
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        for i in range(n):
            j.append("node_completed", f"run-{tag}", {"i": i})
        j.seal()


def rotate(h: History) -> VerifyKey:
    with Journal.open(h.paths.store, key_dir=h.paths.keys, config=CFG) as j:
        return j.rotate_key()


def test_rotation_keeps_old_segments_verifying_with_the_first_key_alone(history: History) -> None:
    first = history.verify_key
    second = rotate(history)
    add_segment(history)
    third = rotate(history)
    add_segment(history, tag="last")
    assert len({first.key_id, second.key_id, third.key_id}) == 3
    report = verify_store(history.store, public_keys=[first])  # trust flows along the signed history
    assert report.ok, report.findings
    assert [e["key_id"] for e in report.key_history] == [first.key_id, second.key_id, third.key_id]
    assert report.keys_used == {first.key_id: 4, second.key_id: 1, third.key_id: 1}
    assert "key history of 3 entries" in report.to_text()
    # The newest key alone vouches for nothing before it: the older manifests do not verify.
    assert {f.kind for f in verify_store(history.store, public_keys=[third]).findings} >= {"manifest_signature"}
    # The old private key is gone from the key directory; only public halves remain of it.
    key_dir = history.paths.keys / history.journal_id
    assert keys_mod.load_keys(history.paths.keys, history.journal_id)[0].verify_key.key_id == third.key_id
    assert not (key_dir / keys_mod.NEXT_FILE).exists() and not (key_dir / keys_mod.PENDING_FILE).exists()
    assert all(b"PRIVATE" not in p.read_bytes() for p in key_dir.glob("*.pem") if p.name != keys_mod.SIGNING_FILE)


def test_a_proof_across_a_rotation_checks_under_the_first_key_alone(history: History) -> None:
    """The proof carries the key history up to its newest signer, so the first key is enough."""
    second = rotate(history)
    add_segment(history)
    from wormjournal import Reader

    data = make_proof(Reader(history.store, public_keys=[history.verify_key]), seq=2).to_json()
    got = check_proof(data, [history.verify_key])
    assert (got.manifest_key_id, got.checkpoint_key_id) == (history.verify_key.key_id, second.key_id)
    # Trusting only the newer key: the manifest signed before the rotation is not vouched for.
    from wormjournal.segments.notes import SigningKey
    from wormjournal.verify.proof import ProofError

    with pytest.raises(ProofError):
        check_proof(data, [second])
    with pytest.raises(ProofError):
        check_proof(data, [SigningKey.generate("x").verify_key])


def test_a_running_writer_picks_up_a_rotation_by_another_process(history: History) -> None:
    with Journal.open(history.paths.store, key_dir=history.paths.keys, config=CFG) as j:
        j.append("node_started", "run-x", {"a": 1})
        old, _ = keys_mod.load_keys(history.paths.keys, history.journal_id)
        new = keys_mod.rotate_signing_key(history.paths.keys, LocalStore(history.paths.store), history.journal_id, old)
        (m,) = j.seal()
        assert m.key_id == new.verify_key.key_id
    assert verify_store(history.store, public_keys=[history.verify_key]).ok


@pytest.mark.parametrize("crash_at", ["rename", "store"])
def test_a_rotation_interrupted_by_a_crash_is_finished_on_open(history: History, crash_at: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    class Crash(Exception):
        pass

    real_replace, real_finish = os.replace, keys_mod.finish_rotation
    calls = {"finish": 0}

    def replace(src: str, dst: str) -> None:  # os.replace is the os module's: only the key directory's crash
        if Path(dst).is_relative_to(history.paths.keys):
            raise Crash
        real_replace(src, dst)

    def finish(*args: object) -> None:
        calls["finish"] += 1
        if calls["finish"] == 2:  # the first call only cleans up; the second would store the entry
            raise Crash
        real_finish(*args)  # type: ignore[arg-type]

    if crash_at == "rename":
        monkeypatch.setattr(keys_mod.os, "replace", replace)
    else:
        monkeypatch.setattr(keys_mod, "finish_rotation", finish)
    with pytest.raises(Crash):
        rotate(history)
    monkeypatch.setattr(keys_mod.os, "replace", real_replace)
    monkeypatch.setattr(keys_mod, "finish_rotation", real_finish)
    key_dir = history.paths.keys / history.journal_id
    assert (key_dir / keys_mod.PENDING_FILE).exists()
    assert not LocalStore(history.paths.store).head(entry_name(1))
    add_segment(history)  # opening the journal finishes the rotation before anything is sealed
    assert not (key_dir / keys_mod.PENDING_FILE).exists()
    h = load_trust(LocalStore(history.paths.store)).ring
    assert len(h.entries) == 2 and not h.problems
    report = verify_store(history.store, public_keys=[history.verify_key])
    assert report.ok, report.findings
    assert report.keys_used[h.entries[1].key_id] == 1


def test_a_retired_key_refuses_to_sign(history: History) -> None:
    """A copy of the key directory made before a rotation holds the retired key: the writer refuses at
    open, before anything is appended (FORMAT.md 6.1: the rotation fixed where the new key takes over)."""
    stolen, _ = keys_mod.load_keys(history.paths.keys, history.journal_id)
    rotate(history)
    key_file = history.paths.keys / history.journal_id / keys_mod.SIGNING_FILE
    key_file.write_bytes(stolen.private_pem())
    before = sorted(p.name for p in history.paths.store.rglob("*"))
    with pytest.raises(KeyRetiredError, match="retired by key history entry 1") as err:
        Journal.open(history.paths.store, key_dir=history.paths.keys, config=CFG)
    assert "rotate-key" in err.value.hint
    assert sorted(p.name for p in history.paths.store.rglob("*")) == before


@pytest.mark.parametrize("backdated", [False, True], ids=["now", "backdated-into-its-old-window"])
def test_a_stolen_old_key_signing_after_the_rotation_is_a_finding(history: History, backdated: bool) -> None:
    """Signed by hand past the writer's refusal: the key is valid by position, so a manifest time inside
    the old key's window (whoever holds the key writes it) changes nothing."""
    stolen, _ = keys_mod.load_keys(history.paths.keys, history.journal_id)
    before = load_trust(history.store).ring.entries[0].valid_from_micros
    rotate(history)
    forge_seal(history.store, stolen, [("human_approved", "run-y", {"b": 2})],
               sealed_at=before + 1 if backdated else None)
    findings = verify_store(history.store, public_keys=[history.verify_key]).findings
    assert [(f.kind, f.segment, f.object) for f in findings if f.kind == "key_validity"] == [
        ("key_validity", 4, None), ("key_validity", None, layout.checkpoint("main", 5)),
        ("key_validity", None, layout.head(4))]  # the manifest, the checkpoint, the head naming them
    with pytest.raises(IntegrityError) as err:
        list(Reader(history.store, public_keys=[history.verify_key]).replay("run-y"))
    assert err.value.kind == "key_validity"


def test_a_journal_without_history_cannot_be_written(history: History) -> None:
    """Entry 0 is written at creation: a journal without it is damaged, never one without key checks."""
    path = history.paths.store / entry_name(0)
    make_writable(path)
    path.unlink()
    with pytest.raises(IntegrityError, match="no key history") as err:
        rotate(history)
    assert err.value.kind == "key_history"
    assert [f.kind for f in verify_store(history.store,
                                         public_keys=[history.verify_key]).findings][:1] == ["key_history"]


# -- since and the retention horizon, from the command line -------------------------------------------------


def remove(h: History, *relative: str) -> None:
    for name in relative:
        path = h.paths.store / name
        make_writable(path)
        path.unlink()


def test_cli_checkpoint_since_and_horizon(history: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, keys = str(history.paths.store), str(history.paths.keys)
    pub = tmp_path / "pub.pem"
    pub.write_bytes(history.verify_key.pem())
    assert main(["checkpoint", store, "--key-dir", keys]) == 0
    saved = tmp_path / "cp.txt"
    saved.write_text(capsys.readouterr().out)
    add_segment(history)
    assert main(["verify", store, "--public-key", str(pub), "--since", str(saved), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["since"]["tree_size"] == 4 and report["since"]["extends_to"] == 5
    assert report["since"]["consistency_proof"] and report["findings"] == []
    # The two oldest segments expire (objects and manifests): verified from the horizon.
    remove(history, *(history.manifests[n].object for n in range(2)), *(layout.manifest("main", n) for n in range(2)))
    assert main(["verify", store, "--public-key", str(pub), "--since", str(saved)]) == 0
    text = capsys.readouterr().out
    assert "horizon    verified from segment 2" in text and "extended to 5 segments" in text
    assert main(["verify", store, "--public-key", str(pub)]) == 1  # without the saved point: segments are missing
    assert "manifest_missing" in capsys.readouterr().out
    # Only objects expired (manifests kept): also fine, and counted.
    saved_manifest = tmp_path / "m3.note"
    saved_manifest.write_bytes((history.paths.store / layout.manifest("main", 3)).read_bytes())
    assert main(["verify", store, "--public-key", str(pub), "--since", str(saved_manifest), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["since"]["kind"] == "manifest"


def test_cli_since_refuses_what_is_not_a_checkpoint(history: History, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n")
    assert main(["verify", str(history.paths.store), "--since", str(bad)]) == 2
    assert "--since" in capsys.readouterr().err
    assert main(["verify", str(history.paths.store), "--since", str(tmp_path / "missing.txt")]) == 2


def test_cli_rotate_key(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rotate-key", str(history.paths.store), "--key-dir", str(history.paths.keys)]) == 0
    out = capsys.readouterr().out
    assert "rotated the signing key" in out and history.verify_key.key_id in out
    add_segment(history)
    assert verify_store(history.store, public_keys=[history.verify_key]).ok
