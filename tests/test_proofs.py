"""Inclusion proofs (FORMAT.md 10a): made from the store, checked offline with a public key only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wormjournal import Reader
from wormjournal.cli import main
from wormjournal.errors import NotFoundError
from wormjournal.journal import JournalConfig
from wormjournal.segments.manifest import Checkpoint
from wormjournal.segments.notes import SigningKey, open_note
from wormjournal.verify.proof import Proof, ProofError, check_proof, make_proof

from conftest import History, build_history


def reader(h: History) -> Reader:
    return Reader(h.store, public_keys=[h.verify_key])


def test_every_event_has_a_proof_that_checks(history: History) -> None:
    r = reader(history)
    for seq in range(36):
        data = make_proof(r, seq=seq).to_json()
        got = check_proof(data, [history.verify_key])
        assert got.seq == seq and got.checkpoint_size == 4 and got.journal_id == history.journal_id
        assert got.segment == seq // 9 and got.execution_id == history.appended[seq][1]
    event = r.events("run-beta")[2]
    assert check_proof(make_proof(r, event_id=event.event_id).to_json(), [history.verify_key]).seq == event.seq


def test_a_proof_stays_valid_after_later_seals(history: History) -> None:
    """A proof under checkpoint 4 keeps checking after the journal grew; a new proof uses the new checkpoint."""
    from wormjournal.journal import Journal

    old = make_proof(reader(history), seq=5).to_json()
    with Journal.open(history.paths.store, key_dir=history.paths.keys) as j:
        j.append("node_started", "run-late", {"x": 1})
        j.seal()
    assert check_proof(old, [history.verify_key]).checkpoint_size == 4
    assert check_proof(make_proof(reader(history), seq=5).to_json(), [history.verify_key]).checkpoint_size == 5


def test_any_changed_byte_fails(history: History) -> None:
    data = make_proof(reader(history), seq=13).to_json()
    check_proof(data, [history.verify_key])
    accepted = []
    for i in range(len(data)):
        for flip in (0x01, 0x20):
            mutated = data[:i] + bytes([data[i] ^ flip]) + data[i + 1 :]
            try:
                check_proof(mutated, [history.verify_key])
            except ProofError:
                continue
            accepted.append(i)
    assert accepted == []
    for bad in (data[:-1], data + b"\n", data.replace(b"\n", b"\r\n"), data[:100]):
        with pytest.raises(ProofError):
            check_proof(bad, [history.verify_key])


def test_proof_size_grows_with_the_log_of_the_segment(tmp_path: Path) -> None:
    small = build_history_of(tmp_path / "a", 8)
    big = build_history_of(tmp_path / "b", 512)
    for h, n in ((small, 8), (big, 512)):
        proof = make_proof(reader(h), seq=3)
        assert len(proof.event_path) == math.ceil(math.log2(n))
        assert len(proof.checkpoint_path) == 0  # one segment
    assert len(make_proof(reader(big), seq=3).to_json()) < len(make_proof(reader(small), seq=3).to_json()) + 9 * 70


def build_history_of(root: Path, events: int) -> History:
    from conftest import StorePaths

    return build_history(StorePaths(root / "store", root / "keys"), segments=1, events_per_segment=events,
                         config=JournalConfig(seal_max_age_seconds=None, row_group_rows=64))


def test_untrusted_or_foreign_keys_fail(history: History, tmp_path: Path) -> None:
    data = make_proof(reader(history), seq=1).to_json()
    stranger = SigningKey.generate("wormjournal/x").verify_key
    with pytest.raises(ProofError, match="trusted key"):
        check_proof(data, [stranger])
    with pytest.raises(ProofError):
        check_proof(data, [])
    # A proof re-signed by another journal's key does not pass under the first journal's key.
    other = build_history_of(tmp_path / "other", 4)
    foreign = make_proof(reader(other), seq=1).to_json()
    with pytest.raises(ProofError):
        check_proof(foreign, [history.verify_key])
    assert check_proof(foreign, [history.verify_key, other.verify_key]).journal_id == other.journal_id


def test_forged_proofs_fail(history: History) -> None:
    """Consistent-looking forgeries: a real event moved to another row, another segment's manifest,
    a checkpoint that does not hold the manifest."""
    r = reader(history)
    a, b = make_proof(r, seq=3), make_proof(r, seq=12)
    forged = [
        Proof(a.event, a.prev_hash, a.leaf_index + 1, a.event_path, a.manifest, a.checkpoint, a.checkpoint_path),
        Proof(a.event, a.prev_hash, a.leaf_index, a.event_path, b.manifest, b.checkpoint, b.checkpoint_path),
        Proof(a.event, a.prev_hash, a.leaf_index, a.event_path, a.manifest, a.checkpoint, b.checkpoint_path),
        Proof({**a.event, "payload": a.event["payload"] + b"x"}, a.prev_hash, a.leaf_index, a.event_path, a.manifest,
              a.checkpoint, a.checkpoint_path),
        Proof({**a.event, "seq": 40}, a.prev_hash, a.leaf_index, a.event_path, a.manifest, a.checkpoint,
              a.checkpoint_path),
        Proof(a.event, a.prev_hash, a.leaf_index, a.event_path[:-1], a.manifest, a.checkpoint, a.checkpoint_path),
    ]
    for proof in forged:
        with pytest.raises(ProofError):
            check_proof(proof.to_json(), [history.verify_key])


def test_unsealed_or_unknown_events_have_no_proof(history: History) -> None:
    with pytest.raises(NotFoundError):
        make_proof(reader(history), event_id="no-such-event")
    with pytest.raises(NotFoundError):
        make_proof(reader(history), seq=999)


def test_cli_prove_check_proof_and_checkpoint(history: History, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    store, keys = str(history.paths.store), str(history.paths.keys)
    pub = tmp_path / "pub.pem"
    pub.write_bytes(history.verify_key.pem())
    assert main(["prove", store, "--seq", "7", "--key-dir", keys]) == 0
    proof = tmp_path / "proof.json"
    proof.write_text(capsys.readouterr().out)
    assert main(["check-proof", str(proof), "--public-key", str(pub), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["seq"] == 7
    proof.write_bytes(proof.read_bytes().replace(b'"seq": 7', b'"seq": 8'))
    assert main(["check-proof", str(proof), "--public-key", str(pub)]) == 1
    assert "PROOF FAILS" in capsys.readouterr().out
    assert main(["checkpoint", store, "--key-dir", keys]) == 0
    note = capsys.readouterr().out.encode()
    cp = Checkpoint.parse(open_note(note, [history.verify_key])[0])
    assert cp.tree_size == 4 and note == history.checkpoint_path(4).read_bytes()


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: (st.lists(inner, max_size=3)
                                    | st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=8)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_proofs_raise_proof_error(history: History, data: st.DataObject) -> None:
    """Random bytes, random JSON, and a real proof with one value replaced: ProofError, never a crash or a pass."""
    base = json.loads(make_proof_cached(history))
    choice = data.draw(st.integers(0, 2))
    if choice == 0:
        raw = data.draw(st.binary(max_size=200))
    elif choice == 1:
        raw = json.dumps(data.draw(_JSON)).encode()
    else:
        key = data.draw(st.sampled_from(sorted(base)))
        if key == "event":
            where, name = base["event"], data.draw(st.sampled_from(sorted(base["event"])))
        else:
            where, name = base, key
        value = data.draw(_JSON)
        assume(value != where[name])  # the same value again is the same proof
        where[name] = value
        raw = (json.dumps(base, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode()
    with pytest.raises(ProofError):
        check_proof(raw, [history.verify_key])


_CACHE: dict[str, bytes] = {}


def make_proof_cached(history: History) -> bytes:
    key = str(history.paths.store)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = make_proof(reader(history), seq=10).to_json()
    return _CACHE[key]
