"""Witnesses (FORMAT.md 8b, verification step 13), running as real processes on 127.0.0.1, against the issue's
attacks: a tail rollback, a deleted stream, a history rewritten with the journal's own key and a fork, each
caught by ``verify --witness-key`` with no file saved on the auditor's side; and an honest journal whose witness
was down for a while, which verifies once the witness has caught up. On a local directory and on S3."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_fixtures import S3Bucket
from witness_support import WitnessProcess, witness_logs

from wormjournal.journal import Journal, JournalConfig
from wormjournal.journal.keys import load_keys
from wormjournal.segments import merkle
from wormjournal.segments.manifest import Checkpoint, checkpoint_origin
from wormjournal.storage import layout
from wormjournal.verify import WitnessPolicy, verify_store

from conftest import make_writable

PREFIX = "wj"


def config(*witnesses: WitnessProcess) -> JournalConfig:
    return JournalConfig(seal_max_age_seconds=None, row_group_rows=4, witnesses=tuple(w.spec for w in witnesses),
                         witness_interval_seconds=0.2)


def seal_some(j: Journal, n: int, tag: str = "") -> None:
    for i in range(n):
        j.append("node_started", f"run-{tag}{i % 2}", {"i": i, "tag": tag})
        j.seal()


def wait_cosigned(j: Journal, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = j.witness_status()
        if status and all(s.cosigned == s.newest and s.newest and s.error is None for s in status):
            return
        time.sleep(0.05)
    raise AssertionError(f"the witnesses did not catch up: {j.witness_status()}")


def policy(*witnesses: WitnessProcess, quorum: int = 1, max_lag: float = 0.0) -> WitnessPolicy:
    return WitnessPolicy(tuple(w.cosigner for w in witnesses), quorum, max_lag)


def kinds(report: Any) -> set[str]:
    return {f.kind for f in report.findings}


class Local:
    """A journal in a local directory, and an attacker with write access to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "store"
        self.keys = root / "keys"

    @property
    def url(self) -> str:
        return str(self.path)

    def store(self) -> Any:
        return str(self.path)

    def open(self, stream: str, cfg: JournalConfig, create: bool = False) -> Journal:
        if create:
            return Journal.create(self.path, key_dir=self.keys, stream=stream, config=cfg)
        return Journal.open(self.path, key_dir=self.keys, stream=stream, config=cfg)

    def names(self, prefix: str) -> list[str]:
        return sorted(str(p.relative_to(self.path)) for p in (self.path / prefix).rglob("*") if p.is_file())

    def delete(self, name: str) -> None:
        path = self.path / name
        make_writable(path.parent)
        path.unlink()

    def copy_to(self, root: Path) -> Local:
        other = Local(root)
        shutil.copytree(self.path, other.path, symlinks=True, ignore=shutil.ignore_patterns(".locks", ".wal"))
        shutil.copytree(self.keys, other.keys, symlinks=True)
        return other

    def put(self, name: str, data: bytes) -> None:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def get(self, name: str) -> bytes:
        return (self.path / name).read_bytes()


class S3:
    """A journal in a bucket without Object Lock (so that the attacker can delete), over real HTTP."""

    def __init__(self, root: Path, bucket: S3Bucket, prefix: str = PREFIX) -> None:
        self.root, self.bucket, self.prefix = root, bucket, prefix
        self.keys = root / "keys"

    @property
    def url(self) -> str:
        return self.bucket.url(self.prefix)

    def store(self) -> Any:
        return self.bucket.store(self.prefix)

    def open(self, stream: str, cfg: JournalConfig, create: bool = False) -> Journal:
        wal = self.root / "wal"
        if create:
            return Journal.create(self.store(), key_dir=self.keys, stream=stream, config=cfg, wal_dir=wal,
                                  allow_unlocked=True)
        return Journal.open(self.store(), key_dir=self.keys, stream=stream, config=cfg, wal_dir=wal)

    def names(self, prefix: str) -> list[str]:
        return sorted(o.name for o in self.bucket.store(self.prefix).list(prefix))

    def delete(self, name: str) -> None:
        self.bucket.client.delete_object(Bucket=self.bucket.name, Key=f"{self.prefix}/{name}")

    def put(self, name: str, data: bytes) -> None:
        self.bucket.client.put_object(Bucket=self.bucket.name, Key=f"{self.prefix}/{name}", Body=data)

    def get(self, name: str) -> bytes:
        return bytes(self.bucket.store(self.prefix).get(name))

    def copy_to(self, root: Path) -> S3:
        """The journal copied to another prefix of the bucket, with its keys (a second store of it)."""
        other = S3(root, self.bucket, self.prefix + "-copy")
        for name in self.names(""):
            self.bucket.client.copy_object(Bucket=self.bucket.name, Key=f"{other.prefix}/{name}",
                                           CopySource={"Bucket": self.bucket.name, "Key": f"{self.prefix}/{name}"})
        shutil.copytree(self.keys, other.keys, symlinks=True)
        return other


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Local | S3]:
    if request.param == "local":
        yield Local(tmp_path)
    else:
        bucket = request.getfixturevalue("s3_bucket_unlocked")
        yield S3(tmp_path, bucket)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., WitnessProcess]]:
    procs: list[WitnessProcess] = []

    def start(url: str, name: str, *, endpoint: str | None = None, cli: bool = False) -> WitnessProcess:
        w = WitnessProcess(tmp_path / f"witness-{name}", name, witness_logs(url, endpoint, cli=cli), cli=cli)
        procs.append(w)
        return w

    yield start
    for w in procs:
        w.kill()


def endpoint_of(place: Local | S3) -> str | None:
    return place.bucket.endpoint_url if isinstance(place, S3) else None


def journal_with_witness(place: Local | S3, started: Callable[..., WitnessProcess],
                         names: tuple[str, ...] = ("w1.example",), cli: tuple[bool, ...] = ()) -> list[WitnessProcess]:
    """A journal with streams main and side, sealed a few times while its witnesses cosigned every head (the first
    ones, as ``cli`` says, configured by ``wormjournal witness logs`` and served by ``wormjournal witness serve``
    run as commands; the others forked)."""
    with place.open("main", JournalConfig(seal_max_age_seconds=None), create=True):
        pass
    witnesses = [started(place.url, name, endpoint=endpoint_of(place), cli=k < len(cli) and cli[k])
                 for k, name in enumerate(names)]
    with place.open("main", config(*witnesses)) as j:
        seal_some(j, 3, "m")
        with place.open("side", config(*witnesses)) as side:
            seal_some(side, 2, "s")
            wait_cosigned(side)
        seal_some(j, 1, "m")
        wait_cosigned(j)
    return witnesses


def test_an_honest_journal_verifies_with_its_witnesses(place: Local | S3, started: Callable[..., WitnessProcess],
                                                      wj: Any, tmp_path: Path) -> None:
    # The commands `witness logs` and `witness serve` as processes on the local directory; forked on S3 (the same code).
    w1, w2 = journal_with_witness(place, started, ("w1.example", "w2.example"), cli=(isinstance(place, Local),))
    report = verify_store(place.store(), witnesses=policy(w1, w2, quorum=2))
    assert report.ok, report.findings
    assert report.witnesses == {"quorum": 2, "high_water": 6, "cosigned": {"w1.example": 6, "w2.example": 6}}
    # Each witness's cosignature is stored beside the head it cosigned, and the stream's checkpoint it knows of.
    assert any(n.endswith(f".{w1.cosigner.key_hash.hex()}.note") for n in place.names("witness/heads/"))
    keys = tmp_path / "witnesses.vkeys"
    keys.write_text(f"# the auditor's witnesses\n{w1.vkey}\n{w2.vkey}\n")
    args = ["verify", place.url, "--witness-key", keys, "--witness-quorum", 2, "--witness-max-lag", 0]
    if isinstance(place, S3):
        args += ["--endpoint-url", place.bucket.endpoint_url]
    result = wj(*args)
    assert result.code == 0, result.out
    assert "witnesses    high-water mark 6 heads (cosigned by 2)" in result.out
    info = wj("info", place.url, *args[-2:] if isinstance(place, S3) else [])
    assert info.code == 0 and "journal head: 6 head(s)" in info.out
    assert (f"witness w1.example ({w1.cosigner.key_hash.hex()}): cosigned the head log at 6, 0 head(s) behind"
            in info.out)


def test_tail_rollback_with_its_heads_removed(place: Local | S3, started: Callable[..., WitnessProcess]) -> None:
    """The newest segment of main removed with its manifest, checkpoint and every head after it: the heads left
    verify on their own, the cosigned head does not let them."""
    (w1,) = journal_with_witness(place, started)
    for name in (place.names("segments/stream=main/")[-1], layout.manifest("main", 3), layout.checkpoint("main", 4),
                 layout.head(5)):
        place.delete(name)
    assert kinds(verify_store(place.store())) == {"witness_rollback"}  # the cosigned notes are the journal's own
    report = verify_store(place.store(), witnesses=policy(w1))
    rollback = [f for f in report.findings if f.kind == "witness_rollback"]
    assert rollback and any("w1.example" in f.message and "size 6" in f.message and "5 heads" in f.message
                            for f in rollback), report.findings
    assert any(f.stream == "main" and "4 segments" in f.message for f in rollback)


def test_a_stream_deleted_with_every_head(place: Local | S3, started: Callable[..., WitnessProcess]) -> None:
    """Stream side deleted everywhere, and every head with it: only the witnesses' cosigned heads name it."""
    (w1,) = journal_with_witness(place, started)
    for prefix in ("segments/stream=side/", "manifests/stream=side/", "checkpoints/stream=side/",
                   "index/stream=side/", "heads/", "witness/stream=side/"):
        for name in place.names(prefix):
            place.delete(name)
    report = verify_store(place.store(), witnesses=policy(w1))
    assert "head_missing" in kinds(report)
    missing = [f for f in report.findings if f.kind == "witness_rollback" and f.stream == "side"]
    assert missing and "w1.example" in missing[0].message and "stream deleted" in missing[0].message


def test_history_rewritten_with_the_journals_own_key(place: Local | S3, started: Callable[..., WitnessProcess],
                                                     tmp_path: Path) -> None:
    """The thief holds the signing key: main's last segment is replaced by other events, sealed, checkpointed and
    headed with the real key. The witness refuses the new heads; the cosigned ones contradict the store's."""
    (w1,) = journal_with_witness(place, started)
    for name in (place.names("segments/stream=main/")[-1], layout.manifest("main", 3), layout.checkpoint("main", 4),
                 layout.head(5), *place.names("index/stream=main/")):
        if name.startswith("index/") and not name.endswith("000000000003.parquet"):
            continue
        place.delete(name)
    kept = {n: place.get(n) for n in place.names("witness/")}  # under Object Lock they could not be removed
    for n in kept:
        place.delete(n)
    wal = (place.root / "wal") if isinstance(place, S3) else place.path / ".wal"
    shutil.rmtree(wal / "stream=main", ignore_errors=True)  # the thief's own writer, on another machine
    with place.open("main", config(w1)) as j:
        seal_some(j, 1, "forged")
        time.sleep(0.5)
        status = j.witness_status()
    assert status[0].error is not None and "409" in status[0].error  # the witness refused the forged head
    for n, data in kept.items():
        place.put(n, data)
    report = verify_store(place.store(), witnesses=policy(w1))
    assert "witness_inconsistent" in kinds(report), report.findings
    bad = [f for f in report.findings if f.kind == "witness_inconsistent"]
    assert any("w1.example" in f.message and "size 6" in f.message for f in bad)
    assert verify_store(place.store()).ok is False  # the cosigned notes are the journal's own signed statements


def test_a_fork_two_writers_views(place: Local | S3, started: Callable[..., WitnessProcess],
                                  tmp_path: Path) -> None:
    """Two copies of one store, each sealed on by a writer with the real key (a restore beside the live store):
    the witness cosigns the branch it saw first and never the other, which fails verify by its lag, naming the
    witness and the sizes; the writer of the refused branch says so too."""
    (w1,) = journal_with_witness(place, started)
    other = place.copy_to(tmp_path / "fork")
    with place.open("main", config(w1)) as j:
        seal_some(j, 1, "live")
        wait_cosigned(j)
    with other.open("main", config(w1)) as j:
        seal_some(j, 1, "restored")
        time.sleep(0.5)
        refused = j.witness_status()[0].error
    assert refused is not None and "fork" in refused
    assert verify_store(place.store(), witnesses=policy(w1)).ok
    report = verify_store(other.store(), witnesses=policy(w1))
    lag = [f for f in report.findings if f.kind == "witness_lag"]
    assert lag and "w1.example at 6" in lag[0].message and "head log at 7" in lag[0].message
    # With a lag allowed, the fresh fork is a notice, until that time has passed.
    report = verify_store(other.store(), witnesses=policy(w1, max_lag=3600))
    assert report.ok and any("w1.example at 6" in n for n in report.notices)


def test_a_witness_down_for_a_while(place: Local | S3, started: Callable[..., WitnessProcess]) -> None:
    """Appends and seals go on while the witness is down; the lag is reported by the writer and by verify; once the
    witness is back the writer catches it up and the journal verifies."""
    (w1,) = journal_with_witness(place, started)
    w1.kill()
    with place.open("main", config(w1)) as j:
        seal_some(j, 3, "down")
        time.sleep(0.5)
        status = j.witness_status()[0]
        assert status.error is not None and status.lag >= 3 and status.behind_since is not None
        report = verify_store(place.store(), witnesses=policy(w1))
        assert kinds(report) == {"witness_lag"}
        w1.restart()
        wait_cosigned(j)
    report = verify_store(place.store(), witnesses=policy(w1))
    assert report.ok, report.findings
    assert report.witnesses is not None and report.witnesses["cosigned"]["w1.example"] == 9


def test_a_quorum_of_two_with_one_witness_down(tmp_path: Path, started: Callable[..., WitnessProcess]) -> None:
    local = Local(tmp_path)
    w1, w2 = journal_with_witness(local, started, ("w1.example", "w2.example"))
    w2.kill()
    with local.open("main", config(w1, w2)) as j:
        seal_some(j, 1)
        deadline = time.monotonic() + 10
        while j.witness_status()[0].cosigned != 7 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert verify_store(local.store(), witnesses=policy(w1, w2, quorum=1)).ok
    report = verify_store(local.store(), witnesses=policy(w1, w2, quorum=2))
    assert kinds(report) == {"witness_lag"} and "w2.example at 6" in report.findings[0].message
    assert report.witnesses is not None and report.witnesses["high_water"] == 6


def test_planted_and_damaged_cosignatures(tmp_path: Path, started: Callable[..., WitnessProcess]) -> None:
    local = Local(tmp_path)
    (w1,) = journal_with_witness(local, started)
    name = local.names("witness/heads/")[-1]
    data = local.get(name)
    make_writable(local.path / name)
    (local.path / name).write_bytes(data.replace(b"\nstream main", b"\nstream mainx", 1))
    assert "witness_signature" in kinds(verify_store(local.store(), witnesses=policy(w1)))
    (local.path / name).write_bytes(data)
    local.put("witness/heads/latest.note", data)
    assert kinds(verify_store(local.store(), witnesses=policy(w1))) == {"unexpected_object"}
    (local.path / "witness/heads/latest.note").unlink()
    # A cosigned note stored under another size's name, and a cosignature line that does not verify.
    local.put(layout.cosigned(None, 99, w1.cosigner.key_hash), data)
    assert "witness_format" in kinds(verify_store(local.store(), witnesses=policy(w1)))
    (local.path / layout.cosigned(None, 99, w1.cosigner.key_hash)).unlink()
    # A signed checkpoint of size 0 (which the journal can sign: an empty log) has nothing to cosign.
    empty = Checkpoint(checkpoint_origin(json.loads(local.get("journal.json"))["journal_id"], "main"), 0,
                       merkle.frontier_root([]))
    keyed = load_keys(local.keys, json.loads(local.get("journal.json"))["journal_id"])[0]
    local.put(layout.cosigned("main", 0, w1.cosigner.key_hash), empty.sign(keyed))
    assert "witness_format" in kinds(verify_store(local.store(), witnesses=policy(w1)))
    (local.path / layout.cosigned("main", 0, w1.cosigner.key_hash)).unlink()
    text, _, sigs = data.partition(b"\n\n")
    lines = sigs.splitlines(keepends=True)
    broken = lines[-1][:-10] + (b"A" if lines[-1][-10:-9] != b"A" else b"B") + lines[-1][-9:]
    make_writable(local.path / name)
    (local.path / name).write_bytes(text + b"\n\n" + b"".join(lines[:-1]) + broken)
    report = verify_store(local.store(), witnesses=policy(w1))
    assert report.witnesses is not None and report.witnesses["cosigned"]["w1.example"] < 6


def test_asking_the_witness_catches_a_rollback_that_took_the_cosignatures_too(
        place: Local | S3, started: Callable[..., WitnessProcess], wj: Any) -> None:
    """Without Object Lock, the attacker removes the newest segment, its head and that head's cosignatures: the
    store's newest head is then one the witness did cosign, and the stored notes cannot tell. The witness can:
    asked live (`wormjournal witness check`), it refuses the older head."""
    (w1,) = journal_with_witness(place, started)
    extra = ["--endpoint-url", place.bucket.endpoint_url] if isinstance(place, S3) else []
    honest = wj("witness", "check", place.url, "--witness", w1.spec, *extra)
    assert honest.code == 0 and "the head log at 6" in honest.out, honest.out + honest.err
    for name in (place.names("segments/stream=main/")[-1], layout.manifest("main", 3), layout.checkpoint("main", 4),
                 layout.head(5), *[n for n in place.names("witness/") if "/000000000006." in n
                                   or "stream=main/000000000004." in n]):
        place.delete(name)
    assert verify_store(place.store(), witnesses=policy(w1)).ok  # the stored notes alone cannot tell
    result = wj("witness", "check", place.url, "--witness", w1.spec, *extra)
    assert result.code == 1 and "has cosigned 6, more than this store's 5" in result.out, result.out
    w1.kill()
    assert wj("witness", "check", place.url, "--witness", w1.spec, *extra).code == 4


def test_a_witness_of_each_streams_checkpoints_too(tmp_path: Path, wj: Any) -> None:
    """A witness started with `witness logs --streams` knows each stream's origin as well: the writers submit their
    stream's checkpoint beside the head, its cosignature is stored under witness/stream=<s>/, and verify holds the
    stream to it."""
    local = Local(tmp_path)
    with local.open("main", JournalConfig(seal_max_age_seconds=None), create=True) as j:
        seal_some(j, 1)
    listed = wj("witness", "logs", local.url, "--streams")
    assert listed.code == 0
    logs = listed.out.split()[1::2]
    assert len(logs) == 2 and logs[1].startswith(f"wormjournal/{j.journal_id}/main=")
    w1 = WitnessProcess(tmp_path / "w1", "w1.example", logs)
    try:
        with local.open("main", config(w1)) as j:
            seal_some(j, 2)
            wait_cosigned(j)
        names = local.names("witness/stream=main/")
        assert names[-1].startswith("witness/stream=main/000000000003.")
        assert verify_store(local.store(), witnesses=policy(w1)).ok
        # Main rolled back with its head: the cosigned checkpoint of main says 3 segments.
        for name in (local.names("segments/stream=main/")[-1], layout.manifest("main", 2),
                     layout.checkpoint("main", 3), layout.head(2), *local.names("witness/heads/")):
            local.delete(name)
        report = verify_store(local.store(), witnesses=policy(w1))
        assert any(f.kind == "witness_rollback" and f.stream == "main" and "size 3" in f.message
                   for f in report.findings), report.findings
    finally:
        w1.kill()
