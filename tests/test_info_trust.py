"""``wormjournal info`` goes through the trust core: its counts come from notes that verified, and what did
not verify is said beside them (exit 1), never passed off as the journal's numbers."""

from __future__ import annotations

import json

from wormjournal.verify.info import journal_info

from conftest import History, make_writable


def test_info_of_a_clean_journal_has_no_finding(history: History) -> None:
    info = journal_info(history.store, [history.verify_key])
    (main,) = info["streams"]
    assert info["findings"] == [] and main["segments"] == len(history.manifests)
    assert main["events"] == sum(m.events for m in history.manifests)
    assert main["checkpoint"]["tree_size"] == len(history.manifests)


def test_info_counts_only_manifests_that_verify_and_says_what_did_not(history: History, wj) -> None:  # noqa: ANN001
    path = history.manifest_path(1)
    make_writable(path)
    path.write_bytes(path.read_bytes().replace(b"events ", b"events 1", 1))  # a forged count; the signature breaks
    info = journal_info(history.store, [history.verify_key])
    (main,) = info["streams"]
    assert main["segments"] == len(history.manifests) - 1
    assert main["events"] == sum(m.events for m in history.manifests) - history.manifests[1].events
    assert "manifest_signature" in {f["kind"] for f in info["findings"]}
    r = wj("info", str(history.paths.store))
    assert r.code == 1 and "manifest_signature" in r.err
    r = wj("info", str(history.paths.store), "--json")
    assert r.code == 1 and json.loads(r.out)["findings"]


def test_verify_and_reader_take_a_path(history: History) -> None:
    from wormjournal import Reader, verify_store

    assert verify_store(str(history.paths.store), public_keys=[history.verify_key]).ok
    assert verify_store(history.paths.store, public_keys=[history.verify_key]).ok  # a PathLike
    assert Reader(str(history.paths.store), public_keys=[history.verify_key]).count_events() == sum(
        m.events for m in history.manifests)
