"""LangGraph's own conformance suite for checkpoint savers (langgraph-checkpoint-conformance), on every saver of
the integration, through its async methods and (an adapter) its sync ones: JournalSaver passes all 8 capabilities
(81 tests; the stock savers have 5), and ArchivingSaver passes every capability its inner saver has (the in-memory
and the async SQLite savers: 5, 58 tests; it raises as the inner saver does for the others).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.base import BaseCheckpointSaver  # noqa: E402
from langgraph.checkpoint.conformance import checkpointer_test, validate  # noqa: E402
from langgraph.checkpoint.conformance.capabilities import DetectedCapabilities  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: E402

from wormjournal import Journal, JournalConfig  # noqa: E402
from wormjournal.integrations.langgraph import ArchivingSaver, JournalSaver  # noqa: E402

CONFIG = JournalConfig(seal_max_age_seconds=None, seal_worker=False)
ALL_TESTS, BASE_TESTS = 81, 58  # all 8 capabilities; the 5 of the stock savers


class SyncMethods(BaseCheckpointSaver[str]):
    """A saver's sync methods behind the async ones the suite calls: the suite then tests the sync methods."""

    def __init__(self, saver: Any) -> None:
        super().__init__(serde=saver.serde)
        self.saver = saver

    def get_next_version(self, current: Any, channel: Any) -> Any:
        return self.saver.get_next_version(current, channel)

    async def aget_tuple(self, config: Any) -> Any:
        return self.saver.get_tuple(config)

    async def alist(self, config: Any, *, filter: Any = None, before: Any = None,  # noqa: A002 - LangGraph's name
                    limit: Any = None) -> AsyncIterator[Any]:
        for item in self.saver.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return self.saver.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        self.saver.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.saver.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.saver.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.saver.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.saver.prune(thread_ids, strategy=strategy)


def factory(tmp_path: Path, make: Callable[[Journal, Path], Any], stream: str) -> Any:
    count = 0

    async def saver() -> AsyncIterator[Any]:
        nonlocal count
        count += 1
        d = tmp_path / f"suite-{count}"
        journal = Journal.open_or_create(d / "store", key_dir=d / "keys", stream=stream, config=CONFIG)
        try:
            made = make(journal, d)
            if hasattr(made, "__aenter__"):
                async with made as s:
                    yield s
            else:
                yield made
        finally:
            journal.close()

    return saver


class _AsyncSqlite:
    """ArchivingSaver around an AsyncSqliteSaver, opened and closed around one suite."""

    def __init__(self, journal: Journal, d: Path) -> None:
        self.journal, self.path = journal, d / "inner.db"

    async def __aenter__(self) -> ArchivingSaver:
        self._cm = AsyncSqliteSaver.from_conn_string(str(self.path))
        return ArchivingSaver(await self._cm.__aenter__(), self.journal)

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(*exc)


def missing(inner: Any) -> set[str]:
    return {c.value for c in DetectedCapabilities.from_instance(inner).missing}


CASES: list[tuple[str, str, Callable[[Journal, Path], Any], set[str], int]] = [
    ("journal", "main", lambda j, d: JournalSaver(j), set(), ALL_TESTS),
    ("journal-sync", "main", lambda j, d: SyncMethods(JournalSaver(j)), set(), ALL_TESTS),
    ("archiving-memory", "main", lambda j, d: ArchivingSaver(InMemorySaver(), j), missing(InMemorySaver()),
     BASE_TESTS),
    ("archiving-async-sqlite", "main", _AsyncSqlite, {"delete_for_runs", "copy_thread", "prune"}, BASE_TESTS),
]


@pytest.mark.parametrize(("name", "stream", "make", "skip", "tests"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_the_conformance_suite_passes(tmp_path: Path, name: str, stream: str, make: Any, skip: set[str],
                                      tests: int) -> None:
    registered = checkpointer_test(name=f"{name}-{stream}", skip_capabilities=skip)(factory(tmp_path, make, stream))
    report = asyncio.run(validate(registered))
    failures = {cap: r.failures for cap, r in report.results.items() if cap not in skip and r.passed is not True}
    assert not failures, failures
    assert sum(r.tests_passed for r in report.results.values()) == tests


def test_archiving_raises_as_its_inner_saver_for_what_the_inner_saver_lacks(tmp_path: Path) -> None:
    assert missing(InMemorySaver()) == {"delete_for_runs", "copy_thread", "prune"}
    with Journal.create(tmp_path / "store", key_dir=tmp_path / "keys", config=CONFIG) as journal:
        saver = ArchivingSaver(InMemorySaver(), journal)
        calls: list[Callable[[], Any]] = [lambda: saver.delete_for_runs(["r"]), lambda: saver.copy_thread("a", "b"),
                                          lambda: saver.prune(["a"])]
        for call in calls:
            with pytest.raises(NotImplementedError):
                call()
        assert journal.next_seq == 0  # nothing archived for what did not happen
