"""Shredding from the command line, what verify reports of it, and the inputs it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import CliPaths, event, write_jsonl

from wormjournal import Journal, JournalConfig, ValidationError
from wormjournal.retention.shred import RECEIPT_EXECUTION, RECEIPT_TYPE, receipt_payload
from wormjournal.segments.notes import SigningKey

CONFIG = JournalConfig(seal_max_age_seconds=None)


def subjects_history(p: CliPaths, wj) -> None:  # noqa: ANN001 - the wj fixture's runner
    events = [event(i, subject_id="alice@example.com" if i % 3 == 0 else "bob@example.com" if i % 3 == 1 else None,
                    payload={"i": i, "text": f"SECRET-{i}"}) for i in range(12)]
    assert wj("init", p.store, "--key-dir", p.keys).code == 0
    assert wj("append", p.store, write_jsonl(p.work / "e.jsonl", events), "--key-dir", p.keys).code == 0
    assert wj("seal", p.store, "--key-dir", p.keys).code == 0


def test_shred_keys_and_verify_from_the_command_line(cli_paths: CliPaths, wj) -> None:  # noqa: ANN001
    p = cli_paths
    subjects_history(p, wj)
    keys = [json.loads(line) for line in wj("keys", p.store, "--key-dir", p.keys, "--json").out.splitlines()]
    assert sorted((k["scope"], k["status"], k["events"]) for k in keys) == [("subject", "live", 4),
                                                                            ("subject", "live", 4)]
    key_files = list(p.keys.glob("*/datakeys/keys/*.json"))
    wrapped = {json.loads(f.read_text())["wrapped"] for f in key_files}
    assert len(wrapped) == 2

    r = wj("shred", p.store, "--subject", "alice@example.com", "--reason", "request 118", "--key-dir", p.keys)
    assert r.code == 0, r.err
    assert "shredded subject psn:" in r.out and "1 data key(s) destroyed, 4 event(s)" in r.out
    assert "alice@example.com" not in r.out + r.err

    again = wj("shred", p.store, "--subject", "alice@example.com", "--key-dir", p.keys)
    assert again.code == 0 and "already shredded: erasure receipt at seq 12" in again.out
    unknown = wj("shred", p.store, "--subject", "carol@example.com", "--key-dir", p.keys)
    assert unknown.code == 2 and "no data key for subject 'psn:" in unknown.err
    assert "carol@example.com" not in unknown.out + unknown.err
    with pytest.raises(SystemExit) as usage:  # one of --subject, --thread, --execution, --tenant is required
        wj("shred", p.store, "--key-dir", p.keys)
    assert usage.value.code == 2

    text = wj("keys", p.store, "--key-dir", p.keys)
    assert text.code == 0 and "key material is never shown" in text.out
    assert not any(w in text.out for w in wrapped)
    keys = [json.loads(line) for line in wj("keys", p.store, "--key-dir", p.keys, "--json").out.splitlines()]
    assert sorted((k["status"], k["events"]) for k in keys) == [("live", 4), ("shredded", 4)]
    assert all(set(k) >= {"key_id", "scope", "scope_ref", "status"} and "wrapped" not in k for k in keys)

    assert wj("seal", p.store, "--key-dir", p.keys).code == 0
    report = json.loads(wj("verify", p.store, "--json").out)
    assert report["ok"] and report["encrypted_events"] == 8 and report["shredded_events"] == 4
    [receipt] = report["receipts"]
    assert receipt["seq"] == 12 and receipt["scope"] == "subject" and receipt["reason"] == "request 118"
    assert receipt["events_affected"] == 4 and receipt["scope_ref"].startswith("psn:")
    assert "0 encrypted" not in wj("verify", p.store).out

    replay = [json.loads(line) for line in
              wj("replay", p.store, "--execution", "run-1", "--json", "--key-dir", p.keys).out.splitlines()]
    assert [e["payload"].get("$wormjournal") for e in replay] == ["shredded", None, None] * 4
    assert [e["payload"]["text"] for e in replay
            if e["subject_id"] is not None and not e["payload"].get("$wormjournal")] == [
        f"SECRET-{i}" for i in range(12) if i % 3 == 1]
    # Without the key store (an auditor's machine), every encrypted payload is a marker, never an error.
    blind = [json.loads(line) for line in
             wj("replay", p.store, "--execution", "run-1", "--json", "--key-dir", p.work).out.splitlines()]
    assert [e["payload"].get("$wormjournal") for e in blind] == ["encrypted", "encrypted", None] * 4


def test_reapplying_receipts_after_restoring_a_key_store_backup(cli_paths: CliPaths, wj) -> None:  # noqa: ANN001
    """A backup taken before the shred brings alice's key back; --reapply-receipts destroys it again."""
    import shutil

    p = cli_paths
    subjects_history(p, wj)
    [datakeys] = list(p.keys.glob("*/datakeys"))
    backup = p.work / "datakeys-backup"
    shutil.copytree(datakeys, backup)
    assert wj("shred", p.store, "--subject", "alice@example.com", "--key-dir", p.keys).code == 0

    def payloads() -> list[object]:
        r = wj("replay", p.store, "--execution", "run-1", "--json", "--key-dir", p.keys)
        return [json.loads(line)["payload"].get("$wormjournal") for line in r.out.splitlines()][:12]

    assert payloads() == ["shredded", None, None] * 4
    shutil.rmtree(datakeys)
    shutil.copytree(backup, datakeys)  # the restore
    assert payloads() == [None] * 12  # alice's payloads are readable again: the danger of backups
    r = wj("keys", p.store, "--key-dir", p.keys, "--reapply-receipts")
    assert r.code == 0 and "1 key(s) named by erasure receipts; 1 were live here and are destroyed now" in r.out
    assert payloads() == ["shredded", None, None] * 4
    again = wj("keys", p.store, "--key-dir", p.keys, "--reapply-receipts")
    assert "0 were live here" in again.out


def test_verify_reports_a_receipt_whose_note_does_not_verify(tmp_path: Path) -> None:
    with Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG) as j:
        j.append("tool_called", "x-1", {"a": 1}, subject_id="alice")
        receipt = {"scope": "subject", "scope_ref": "psn:00", "key_ids": ["00" * 16],
                   "destroyed_at": "2025-01-01T00:00:00Z", "events_affected": 1, "provider": "local",
                   "deletion_references": ["x"], "reason": None}
        forged = receipt_payload(receipt, SigningKey.generate(f"wormjournal/{j.journal_id}"))
        good = receipt_payload(dict(receipt, reason="genuine"), j._key)  # noqa: SLF001 - the journal's own key
        altered = dict(good, receipt=dict(good["receipt"], events_affected=0))  # the note says 1
        seqs = [j._append([{"event_type": RECEIPT_TYPE, "execution_id": RECEIPT_EXECUTION, "payload": payload,  # noqa: SLF001
                            "key_scope": "none"}], internal=True)[0] for payload in (forged, good, altered)]
        j.seal()
        report = j.verify()
    findings = [(f.kind, f.seq) for f in report.findings]
    assert findings == [("erasure_receipt", seqs[0]), ("erasure_receipt", seqs[2])], report.to_text()
    assert [r["seq"] for r in report.receipts] == [seqs[1]]


def test_scoped_appends_refuse_bad_input_before_writing(tmp_path: Path) -> None:
    with Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG) as j:
        cases = [
            ({"event_type": RECEIPT_TYPE, "execution_id": RECEIPT_EXECUTION, "payload": {}}, "event_type"),
            ({"event_type": "tool_called", "execution_id": "x", "key_scope": "person"}, "key_scope"),
            ({"event_type": "tool_called", "execution_id": "x", "key_scope": "thread"}, "key_scope"),  # no thread_id
        ]
        for ev, field in cases:
            with pytest.raises(ValidationError) as info:
                j.append_batch([ev])
            assert info.value.field == field
        assert j.next_seq == 0
        with pytest.raises(ValidationError):
            j.shred(subject="a", thread="b")
        keys_before = sorted(p.name for p in (tmp_path / "keys").rglob("*"))
        j.append("tool_called", "x", {"v": 1}, key_scope="none", subject_id="alice")
        assert sorted(p.name for p in (tmp_path / "keys").rglob("*")) == keys_before  # no key made for plaintext
        [e] = j.reader().events("x")
        assert (e.payload_codec, e.payload_key_id, e.payload) == ("json", None, {"v": 1})
