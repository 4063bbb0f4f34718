"""SQL over the segments (``wormjournal query``, ``stats``) and the segments read as they are by other tools."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from s3_fixtures import S3Bucket

from wormjournal import analytics
from wormjournal.errors import ValidationError
from wormjournal.journal import Journal, JournalConfig
from wormjournal.retention import RetentionPolicy
from wormjournal.storage.local import LocalStore

from conftest import BASE_TS, History, make_writable

NO_AGE = JournalConfig(seal_max_age_seconds=None)


def test_the_events_view_has_every_event_with_its_payload(history: History) -> None:
    con = analytics.connect(history.paths.store)
    rows = con.execute("SELECT seq, stream, date, ts, event_type, execution_id, node, payload_json "
                       "FROM events ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == list(range(len(history.appended)))
    for (_seq, stream, date, ts, kind, execution, node, payload), (a_kind, a_exec, a_payload, fields) in zip(
            rows, history.appended, strict=True):
        assert (stream, kind, execution, node) == ("main", a_kind, a_exec, fields.get("node"))
        assert ts == fields["ts"] and date == fields["ts"].date()
        if "subject_id" in fields:  # encrypted in the subject's scope: opaque without the key store
            assert json.loads(payload)["$wormjournal"] == "encrypted"
        else:
            assert json.loads(payload) == a_payload
    assert [c[0] for c in con.execute("DESCRIBE events").fetchall()] == list(analytics.EVENT_COLUMNS)


# Long enough that no hash, key id or compressed byte run in a segment holds it by chance ("4111" did).
CARD = "4111-1111-1111-1111 exp 12/29"


def test_decrypt_and_shredded_markers(tmp_path: Path, wj) -> None:  # noqa: ANN001
    store, keys = tmp_path / "journal", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=NO_AGE) as j:
        j.append("tool_called", "run-1", {"card": CARD}, subject_id="alice")
        j.append("tool_called", "run-2", {"card": "5500"}, subject_id="bob")
        j.seal()
        j.shred(subject="bob")
        j.seal()
    sql = "SELECT execution_id, payload_json FROM events WHERE event_type = 'tool_called' ORDER BY seq"
    r = wj("query", store, sql, "--format", "json")
    assert r.code == 0, r.err
    opaque = [json.loads(json.loads(line)["payload_json"]) for line in r.out.splitlines()]
    assert [p["$wormjournal"] for p in opaque] == ["encrypted", "shredded"]  # the receipt names bob's key
    r = wj("query", store, sql, "--format", "json", "--decrypt", "--key-dir", keys)
    assert r.code == 0, r.err
    clear = [json.loads(json.loads(line)["payload_json"]) for line in r.out.splitlines()]
    assert clear[0] == {"card": CARD} and clear[1]["$wormjournal"] == "shredded"
    assert CARD.encode() not in b"".join(p.read_bytes() for p in store.rglob("*.parquet"))


def test_partition_pruning_skips_the_other_dates(tmp_path: Path) -> None:
    store = tmp_path / "journal"
    with Journal.create(store, key_dir=tmp_path / "keys", config=NO_AGE) as j:
        for i in range(9):
            j.append("node_started", f"run-{i}", {"i": i}, node="plan", ts=BASE_TS + dt.timedelta(days=i // 3))
        j.seal()  # one segment per UTC date
    con = analytics.connect(LocalStore(store))
    day = BASE_TS.date()
    plan = con.execute(f"EXPLAIN SELECT count(*) FROM events WHERE date = DATE '{day}' AND stream = 'main'"
                       ).fetchall()[0][1]
    assert "Filters:" in plan and str(day) in plan  # pushed into the scan of the partitioned dataset
    # The proof: garbage in the files of the other dates is never opened by a query pruned to one date.
    for other in (day + dt.timedelta(days=1), day + dt.timedelta(days=2)):
        victim = next((store / "segments" / "stream=main" / f"date={other}").glob("*.parquet"))
        make_writable(victim)
        victim.write_bytes(b"not parquet")
    fresh = analytics.connect(LocalStore(store))
    assert fresh.execute(f"SELECT count(*) FROM events WHERE date = DATE '{day}'").fetchall() == [(3,)]
    with pytest.raises(Exception, match="(?i)parquet"):
        fresh.execute("SELECT count(*) FROM events").fetchall()


def test_query_formats_and_output_files(history: History, tmp_path: Path, wj) -> None:  # noqa: ANN001
    store = history.paths.store
    sql = "SELECT event_type, count(*) AS n FROM events GROUP BY 1 ORDER BY 1"
    expected = duckdb.sql(f"SELECT event_type, count(*) AS n FROM read_parquet('{store}/segments/**/*.parquet') "
                          "GROUP BY 1 ORDER BY 1").fetchall()
    r = wj("query", store, sql)
    assert r.code == 0 and r.out.splitlines()[0].split() == ["event_type", "n"]
    assert [tuple(line.split()) for line in r.out.splitlines()[1:]] == [(k, str(n)) for k, n in expected]
    r = wj("query", store, sql, "--format", "csv")
    assert r.out.splitlines() == ['"event_type","n"'] + [f'"{k}",{n}' for k, n in expected]
    r = wj("query", store, sql, "--format", "parquet", "--out", tmp_path / "out.parquet")
    assert r.code == 0 and pq.read_table(tmp_path / "out.parquet").to_pylist() == [
        {"event_type": k, "n": n} for k, n in expected]
    r = wj("query", store, sql, "--format", "json", "--out", tmp_path / "out.jsonl")
    assert [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        {"event_type": k, "n": n} for k, n in expected]
    r = wj("query", store, sql, "--format", "parquet")
    assert r.code == 2 and "needs --out" in r.err
    r = wj("query", store, "SELECT nope FROM events")
    assert r.code == 2 and 'column "nope" not found' in r.err
    r = wj("query", tmp_path / "nothing", sql)
    assert r.code == 2 and "no journal" in r.err


def test_query_over_s3(s3_bucket: S3Bucket, tmp_path: Path, wj) -> None:  # noqa: ANN001
    store = s3_bucket.store("archive", retention=RetentionPolicy("COMPLIANCE", 1))
    with Journal.create(store, key_dir=tmp_path / "keys", wal_dir=tmp_path / "wal", config=NO_AGE) as j:
        for i in range(5):
            j.append("node_started", f"run-{i % 2}", {"i": i}, node="plan", ts=BASE_TS + dt.timedelta(days=i % 2))
        j.seal()
    r = wj("query", s3_bucket.url("archive"), "SELECT date, count(*) AS n FROM events GROUP BY 1 ORDER BY 1",
           "--format", "json", "--endpoint-url", s3_bucket.endpoint_url)
    assert r.code == 0, r.err
    assert [json.loads(x) for x in r.out.splitlines()] == [
        {"date": BASE_TS.date().isoformat(), "n": 3},
        {"date": (BASE_TS + dt.timedelta(days=1)).date().isoformat(), "n": 2}]


# -- ready queries --------------------------------------------------------------------------------


def test_stats_answer_what_users_ask(tmp_path: Path, wj) -> None:  # noqa: ANN001
    store = tmp_path / "journal"
    t = BASE_TS
    with Journal.create(store, key_dir=tmp_path / "keys", config=NO_AGE) as j:
        def at(seconds: float) -> dt.datetime:
            return t + dt.timedelta(seconds=seconds)

        for run, status in (("run-1", "execution_completed"), ("run-2", "execution_failed")):
            j.append("execution_started", run, {}, ts=at(0))
            for k, (node, took) in enumerate((("plan", 1.0), ("act", 3.0))):
                j.append("node_started", run, {}, node=node, step_id=str(k), ts=at(10 * k))
                j.append("node_completed", run, {}, node=node, step_id=str(k),
                         ts=at(10 * k + took * (1 + (run == "run-2"))))
            j.append("tool_called", run, {"tool": "search"}, node="act", ts=at(20))
            j.append("tool_returned", run, {"tool": "search", "ok": run == "run-1"}, node="act", ts=at(21))
            j.append("llm_completed", run, {"model": "m-1", "usage": {"prompt_tokens": 100, "completion_tokens": 20},
                                            "cost_usd": 0.5}, node="plan", ts=at(22))
            j.append(status, run, {}, ts=at(30))
        j.append("execution_started", "run-3", {}, ts=at(40), thread_id="t-3")
        j.append("human_interrupted", "run-3", {"question": "refund?"}, ts=at(41), thread_id="t-3")
        j.seal()
    con = analytics.connect(LocalStore(store))
    results = {name: table.to_pylist() for name, table in analytics.stats(con).items()}
    day = t.date()
    assert results["runs_per_day"] == [{"day": day, "status": "completed", "runs": 1},
                                       {"day": day, "status": "failed", "runs": 1},
                                       {"day": day, "status": "started", "runs": 1}]
    durations = {r["node"]: r for r in results["node_durations"]}
    assert durations["plan"]["runs"] == 2 and durations["plan"]["p50_ms"] == 1500.0
    assert durations["act"]["p95_ms"] == pytest.approx(5850.0)  # 3 s and 6 s
    assert results["tool_errors"] == [{"tool": "search", "calls": 2, "errors": 1, "error_rate": 0.5}]
    assert results["llm_usage"] == [{"day": day, "model": "m-1", "calls": 2, "tokens": 240, "cost_usd": 1.0}]
    waiting = results["waiting_on_human"]
    assert [(w["execution_id"], w["thread_id"], w["last_event"]) for w in waiting] == [
        ("run-3", "t-3", "human_interrupted")]
    r = wj("stats", store)
    assert r.code == 0 and "Executions waiting on a human" in r.out and "run-3" in r.out
    r = wj("stats", store, "--json")
    assert json.loads(r.out)["tool_errors"] == [{"tool": "search", "calls": 2, "errors": 1, "error_rate": 0.5}]


# -- as they are: other tools read the segment folder with no wormjournal code -------------------------


def by_type_duckdb(folder: Path) -> list[tuple[str, int]]:
    return duckdb.sql(f"""
        SELECT event_type, count(*) AS n
        FROM read_parquet('{folder}/**/*.parquet', hive_partitioning = true)
        WHERE stream = 'main' GROUP BY event_type ORDER BY event_type""").fetchall()


def by_type_polars(folder: Path) -> list[tuple[str, int]]:
    pl = pytest.importorskip("polars")
    frame = (pl.scan_parquet(f"{folder}/**/*.parquet", hive_partitioning=True)
             .filter(pl.col("stream") == "main")
             .group_by("event_type").agg(pl.len().alias("n")).sort("event_type").collect())
    return [(k, int(n)) for k, n in frame.iter_rows()]


def by_type_pyarrow(folder: Path) -> list[tuple[str, int]]:
    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    table = dataset.to_table(columns=["event_type"], filter=ds.field("stream") == "main")
    counts = table.group_by("event_type").aggregate([("event_type", "count")]).sort_by("event_type")
    return [(r["event_type"], r["event_type_count"]) for r in counts.to_pylist()]


def test_the_segments_read_as_they_are_with_duckdb_polars_and_pyarrow(history: History) -> None:
    folder = history.paths.store / "segments"
    expected: dict[str, int] = {}
    for kind, *_ in history.appended:
        expected[kind] = expected.get(kind, 0) + 1
    want = sorted(expected.items())
    assert by_type_duckdb(folder) == want
    assert by_type_polars(folder) == want
    assert by_type_pyarrow(folder) == want


def test_query_module_refuses_bad_output(tmp_path: Path) -> None:
    import pyarrow as pa

    from wormjournal.cli_query import write_result

    reader = pa.RecordBatchReader.from_batches(pa.schema([("a", pa.int64())]), [])
    with pytest.raises(ValidationError, match="needs --out"):
        write_result(reader, "parquet", None, print)
    assert write_result(pa.RecordBatchReader.from_batches(pa.schema([("a", pa.int64())]), []), "csv", None,
                        lambda line: None) == 0
