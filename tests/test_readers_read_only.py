"""Readers need no write access (issue 3, point 6): verify and info never call a write API on S3.

A botocore ``before-call`` hook on the reader's client records every S3 operation and
fails on any that writes (Put*, Delete*, Create*, Complete*, Upload*, Abort*, Copy*,
Restore*): the client of a reader that is allowed to read only. ``verify_store`` and
``journal_info`` get such a client directly; the CLI builds its own, so ``boto3`` is
replaced in ``wormjournal.storage.s3`` by one that hands out hooked clients.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import boto3
import pytest
from s3_fixtures import S3Bucket, make_client

from wormjournal import cli
from wormjournal.journal import Journal, JournalConfig
from wormjournal.segments.notes import VerifyKey
from wormjournal.storage import s3 as s3_mod
from wormjournal.storage.s3 import S3Store
from wormjournal.verify import verify_store
from wormjournal.verify.info import journal_info

from conftest import BASE_TS

PREFIX = "archive/prod"
WRITE_PREFIXES = ("Put", "Delete", "Create", "Complete", "Upload", "Abort", "Copy", "Restore")
READ_PREFIXES = ("Get", "Head", "List")


class ReadOnly:
    """A before-call hook: records each operation, refuses any that writes."""

    def __init__(self) -> None:
        self.ops: list[str] = []
        self.refused: list[str] = []

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call.s3.*", self)
        return client

    def __call__(self, model: Any, **_: Any) -> None:
        self.ops.append(model.name)
        if model.name.startswith(WRITE_PREFIXES):
            self.refused.append(model.name)
            raise AssertionError(f"a reader called the write operation {model.name}")

    def check(self, *required: str) -> None:
        assert not self.refused, self.refused
        assert self.ops, "no S3 operation was recorded: the hook is not on the client used"
        assert all(op.startswith(READ_PREFIXES) for op in self.ops), sorted(set(self.ops))
        assert set(required) <= set(self.ops), (required, sorted(set(self.ops)))


@pytest.fixture
def journal(s3_bucket: S3Bucket, tmp_path: Path) -> tuple[S3Bucket, Path]:
    """A sealed journal on S3 (two streams, several segments and checkpoints); returns the public key file."""
    config = JournalConfig(seal_max_age_seconds=None, segment_max_events=5)
    with Journal.create(s3_bucket.store(PREFIX), key_dir=tmp_path / "keys", wal_dir=tmp_path / "wal",
                        config=config) as j:
        for _ in range(2):
            j.append_batch([{"event_type": "tool_called", "execution_id": f"run-{i % 2}", "ts": BASE_TS}
                            for i in range(8)])
            j.seal()
        j.append("tool_called", "run-0", ts=BASE_TS)  # unsealed: in the WAL only
        public = tmp_path / "keys" / j.journal_id / f"{j.verify_key.key_id}.pub.pem"
    with Journal.open(
        s3_bucket.store(PREFIX), key_dir=tmp_path / "keys", wal_dir=tmp_path / "wal", stream="audit", config=config
    ) as j:
        j.append("tool_called", "run-9", ts=BASE_TS)
        j.seal()
    assert public.exists()
    return s3_bucket, public


def reader(bucket: S3Bucket, hook: ReadOnly) -> S3Store:
    return S3Store(bucket.name, PREFIX, client=hook.attach(make_client(bucket.endpoint_url)))


def tamper(bucket: S3Bucket) -> None:
    key = next(k for k in bucket.keys() if "/segments/stream=main/" in k)
    data = bytearray(bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read())
    data[-20] ^= 0xFF
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=bytes(data))


# -- the library's readers -------------------------------------------------------------------------


@pytest.mark.parametrize("tampered", [False, True], ids=["intact", "tampered"])
@pytest.mark.parametrize("keys", ["given", "from-store"])
def test_verify_store_only_reads(journal: tuple[S3Bucket, Path], tampered: bool, keys: str) -> None:
    bucket, public = journal
    if tampered:
        tamper(bucket)
    hook = ReadOnly()
    store = reader(bucket, hook)
    before = bucket.all_versions(PREFIX)
    public_keys = [VerifyKey.from_pem("", public.read_bytes())] if keys == "given" else None
    report = verify_store(store, public_keys=public_keys)
    assert report.ok is not tampered, report.to_text()
    assert sorted(s.stream for s in report.streams) == ["audit", "main"]
    assert sum(s.segments for s in report.streams) == 5
    if tampered:
        assert {"object_sha256", "object_version"} <= {f.kind for f in report.findings}
    hook.check("GetObject", "HeadObject", "ListObjectsV2")
    assert bucket.all_versions(PREFIX) == before  # and the server saw no write either


def test_journal_info_only_reads(journal: tuple[S3Bucket, Path]) -> None:
    bucket, _ = journal
    hook = ReadOnly()
    info = journal_info(reader(bucket, hook))
    streams = {s["stream"]: s for s in info["streams"]}
    main = streams["main"]
    assert (main["segments"], main["events"], main["checkpoint"]["tree_size"]) == (4, 16, 4)
    assert (streams["audit"]["segments"], streams["audit"]["events"]) == (1, 1)
    assert info["store"] == f"s3://{bucket.name}/{PREFIX}"
    assert info["bytes"] > 0
    hook.check("GetObject", "ListObjectsV2")


def test_the_hook_refuses_a_write(s3_bucket: S3Bucket) -> None:
    """The hook itself: a write through a hooked client fails before it is sent."""
    hook = ReadOnly()
    store = reader(s3_bucket, hook)
    with pytest.raises(AssertionError, match="PutObject"):
        store.put("x", b"data")
    assert hook.refused == ["PutObject"]
    assert s3_bucket.keys() == []


# -- the CLI, which builds its own client ------------------------------------------------------------


@pytest.fixture
def cli_hook(monkeypatch: pytest.MonkeyPatch) -> ReadOnly:
    """Every client the S3 store creates (the CLI's) carries the read-only hook."""
    hook = ReadOnly()
    real = boto3.client
    made: list[Any] = []

    def client(*args: Any, **kwargs: Any) -> Any:
        made.append(kwargs.get("endpoint_url"))
        return hook.attach(real(*args, **kwargs))

    monkeypatch.setattr(s3_mod, "boto3", types.SimpleNamespace(client=client))
    monkeypatch.setenv("COLUMNS", "200")
    hook.made = made  # type: ignore[attr-defined]
    return hook


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    return code, capsys.readouterr().out


@pytest.mark.parametrize("endpoint", ["flag", "env"])
def test_cli_verify_and_info_only_read(
    journal: tuple[S3Bucket, Path],
    cli_hook: ReadOnly,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    endpoint: str,
) -> None:
    bucket, public = journal
    url = f"s3://{bucket.name}/{PREFIX}"
    if endpoint == "flag":
        extra = ["--endpoint-url", bucket.endpoint_url]
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", bucket.endpoint_url)
        extra = []

    code, out = run_cli(capsys, "verify", url, "--public-key", str(public), "--json", *extra)
    assert code == cli.EXIT_OK, out
    report = json.loads(out)
    assert report["ok"] is True
    code, out = run_cli(capsys, "verify", url, *extra)  # the text report, with the store's keys
    assert code == cli.EXIT_OK, out
    code, out = run_cli(capsys, "info", url, "--json", *extra)
    assert code == cli.EXIT_OK, out
    assert {s["stream"]: s["segments"] for s in json.loads(out)["streams"]} == {"audit": 1, "main": 4}
    code, out = run_cli(capsys, "info", url, *extra)
    assert code == cli.EXIT_OK and "main" in out and "audit" in out, out

    assert len(cli_hook.made) == 4  # type: ignore[attr-defined] - one client per command, each hooked
    cli_hook.check("GetObject", "HeadObject", "ListObjectsV2")


def test_cli_verify_of_a_tampered_store_only_reads(
    journal: tuple[S3Bucket, Path], cli_hook: ReadOnly, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket, public = journal
    tamper(bucket)
    url = f"s3://{bucket.name}/{PREFIX}"
    code, out = run_cli(capsys, "verify", url, "--public-key", str(public), "--endpoint-url", bucket.endpoint_url)
    assert code == cli.EXIT_FINDINGS, out
    assert "object_version" in out and "object_sha256" in out
    cli_hook.check("GetObject", "HeadObject", "ListObjectsV2")
