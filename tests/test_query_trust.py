"""``wormjournal query`` reads only what signed manifests name (issue: nothing unsigned decides what a read returns).

A Parquet file planted under ``segments/`` (a copy of a real segment under the next number, so its rows
are genuine-looking) and a segment whose manifest no longer verifies are both left out of the ``events``
view, and the query says so; ``verify`` reports the same objects.
"""

from __future__ import annotations

import logging
import shutil

import pytest

from wormjournal import analytics
from wormjournal.errors import NotFoundError
from wormjournal.storage import layout
from wormjournal.verify import verify_store

from conftest import History, make_writable


def count(history: History) -> int:
    return analytics.connect(history.paths.store).execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]


def test_a_planted_segment_file_is_not_queried(history: History, caplog: pytest.LogCaptureFixture) -> None:
    before = count(history)
    last = history.manifests[-1]
    date = layout.parse_segment(last.object)[1]  # type: ignore[index]
    planted = history.paths.store / layout.segment("main", date, len(history.manifests))
    shutil.copyfile(history.paths.store / last.object, planted)
    with caplog.at_level(logging.WARNING, logger="wormjournal.analytics"):
        assert count(history) == before  # the copy's rows are not counted twice
    assert "1 object(s) under segments/ left out" in caplog.text
    assert [f.kind for f in verify_store(history.paths.store).findings] == ["orphan_object"]


def test_a_segment_whose_manifest_fails_is_left_out(history: History, caplog: pytest.LogCaptureFixture) -> None:
    before = count(history)
    first = history.manifests[0]
    path = history.manifest_path(0)
    make_writable(path)
    data = path.read_bytes()
    path.write_bytes(data.replace(first.merkle_root.hex().encode(), b"0" * 64))  # the signature no longer holds
    with caplog.at_level(logging.WARNING, logger="wormjournal.analytics"):
        # Segment 0, and segment 1, whose manifest's links (seq, prev_hash) can no longer be checked against it.
        assert count(history) == before - first.events - history.manifests[1].events
    assert "2 object(s) under segments/ left out" in caplog.text and "manifest_signature" in caplog.text


def test_a_store_with_no_manifest_that_verifies_has_nothing_to_query(history: History) -> None:
    for m in range(len(history.manifests)):
        path = history.manifest_path(m)
        make_writable(path)
        path.unlink()
    with pytest.raises(NotFoundError, match="no sealed segments"):
        analytics.connect(history.paths.store)
