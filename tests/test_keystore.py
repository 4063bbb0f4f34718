"""The key store's layout: keys made ahead, scope markers linked exclusively, the older layout still read.

A new scope's first key must cost its marker alone (the key was made ahead, durably), two writers must
never give one scope two live keys, keys made ahead and never given must not outlive the key store
(nor be listed), and a key store written with the older ``scopes/<hash>/<key_id>`` markers must read,
extend and shred as before.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path

import pytest

from wormjournal import KeyStore, KeyStoreError, LocalKek, UnknownScopeError
from wormjournal.retention import keystore as ks
from wormjournal.retention.keystore import POOL

PSEUDONYM_KEY = bytes(range(32))


def make(tmp_path: Path) -> KeyStore:
    return KeyStore.create(tmp_path / "datakeys", "journal-1", PSEUDONYM_KEY)


def reopen(store: KeyStore) -> KeyStore:
    return KeyStore.open(store.directory, "journal-1", PSEUDONYM_KEY)


def key_files(store: KeyStore) -> set[str]:
    return {p.stem for p in (store.directory / "keys").glob("*.json")}


def wait_for_pool(store: KeyStore, size: int = POOL) -> None:
    deadline = time.monotonic() + 30
    while len(store._pool) < size:
        assert time.monotonic() < deadline, "the key store made no keys ahead"
        time.sleep(0.01)


def test_a_new_scope_takes_a_key_made_ahead_and_its_marker_names_it(tmp_path: Path) -> None:
    store = make(tmp_path)
    first_id, first = store.key_for("thread", "t-0")  # the first key is made on demand; the pool starts
    wait_for_pool(store)
    ahead = {key_id for key_id, _ in store._pool}
    key_id, dek = store.key_for("thread", "t-1")
    assert key_id in ahead and key_id not in {k for k, _ in store._pool}
    record = json.loads((store.directory / "keys" / f"{key_id}.json").read_text())
    assert record["scope"] is None  # made before its scope was known
    (marker,) = [p for p in (store.directory / "scopes").iterdir() if json.loads(p.read_text())["key_id"] == key_id]
    h = store._scope_hash("thread", "t-1")
    assert json.loads(marker.read_text()) == {"key_id": key_id, "scope": "thread", "scope_ref": "t-1", "scope_hash": h}
    assert marker.name == f"{h}.0" and marker.stat().st_size == ks.MARKER_BYTES  # written ahead, given in place
    # Another key store of the journal (another writer, a reader) finds the same keys.
    other = reopen(store)
    assert other.key_for("thread", "t-1") == (key_id, dek)
    assert other.key_for("thread", "t-0") == (first_id, first)
    assert other.data_key(key_id) == dek
    listed = {k.key_id: (k.scope, k.scope_ref) for k in other.keys()}
    assert listed == {first_id: ("thread", "t-0"), key_id: ("thread", "t-1")}  # keys made ahead are not listed
    store.close()
    other.close()


def test_close_erases_the_keys_made_ahead_and_never_given(tmp_path: Path) -> None:
    store = make(tmp_path)
    used = {store.key_for("subject", f"person-{i}")[0] for i in range(3)}
    wait_for_pool(store)
    assert len(key_files(store)) == len(used) + POOL
    store.close()
    assert key_files(store) == used
    assert not list((store.directory / ks.READY_DIR).iterdir())  # the markers written ahead go with their keys
    assert store.key_for("subject", "late")[0] in key_files(store)  # a closed store still makes keys (on demand)
    assert len(key_files(store)) == len(used) + 1


def test_keys_made_ahead_by_a_writer_that_crashed_are_never_listed_nor_given(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.key_for("tenant", "acme")
    wait_for_pool(store)
    orphans = {key_id for key_id, _ in store._pool}
    # A crash: the process is gone, the made-ahead key files stay (never given to a scope).
    after = reopen(store)
    assert {k.key_id for k in after.keys()}.isdisjoint(orphans)
    assert after.key_for("tenant", "globex")[0] not in orphans
    after.close()


def test_a_given_marker_whose_link_a_crash_lost_is_linked_when_the_key_store_opens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key given to a scope is acknowledged once its marker (written ahead in ready/) holds the scope, fdatasync'd;
    its link in scopes/ is made durable later. A crash in between can lose the link: the next key store to open
    links the marker again, so that the scope's key is found and shredded. Markers never given are left alone."""
    store = make(tmp_path)
    store.key_for("thread", "warm-up")
    wait_for_pool(store)
    monkeypatch.setattr(store, "_settle", lambda given: None)  # the crash comes before the link is durable
    key_id, dek = store.key_for("subject", "alice")
    h = store._scope_hash("subject", "alice")
    (store.directory / "scopes" / f"{h}.0").unlink()  # the link the crash lost
    never_given = {k for k, _ in store._pool}
    after = reopen(store)  # the process is gone: another opens the key store
    assert after.key_for("subject", "alice") == (key_id, dek)
    assert json.loads((store.directory / "scopes" / f"{h}.0").read_text())["key_id"] == key_id
    ready = {p.name for p in (store.directory / ks.READY_DIR).iterdir()}
    assert key_id not in ready and never_given <= ready
    assert [k.key_id for k in after.destroy("subject", "alice").keys] == [key_id]
    after.close()


def test_a_key_store_that_recovers_a_marker_while_its_writer_links_it_gives_the_key_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make(tmp_path)
    store.key_for("thread", "warm-up")
    wait_for_pool(store)
    opened: list[KeyStore] = []
    link = os.link

    def recover_first(src: str, dst: str) -> None:
        if not opened and "/ready/" in str(src):
            opened.append(reopen(store))  # between the marker's fdatasync and its link: it links the marker itself
        link(src, dst)

    monkeypatch.setattr(ks.os, "link", recover_first)
    key_id, dek = store.key_for("execution", "run-9")
    monkeypatch.undo()
    assert opened and opened[0].key_for("execution", "run-9") == (key_id, dek)
    h = store._scope_hash("execution", "run-9")
    assert [p.name for p in (store.directory / "scopes").iterdir() if p.name.startswith(h)] == [f"{h}.0"]
    assert key_id not in {k for k, _ in store._pool}  # never given to another scope
    assert store.key_for("execution", "run-10")[0] != key_id
    opened[0].close()
    store.close()


def test_a_key_made_ahead_that_a_crash_cut_short_is_passed_over_unless_a_marker_names_it(tmp_path: Path) -> None:
    store = make(tmp_path)
    key_id, _ = store.key_for("tenant", "acme")
    (store.directory / "keys" / f"{'0' * 32}.json").write_bytes(b'{"key_id": "000')  # cut short
    after = reopen(store)
    assert [k.key_id for k in after.keys()] == [key_id]
    (store.directory / "keys" / f"{key_id}.json").write_bytes(b'{"key_id": "')  # one a scope has: damage
    with pytest.raises(KeyStoreError, match="damaged"):
        list(after.keys())
    store.close()
    after.close()


def test_a_scope_reference_too_long_for_a_marker_written_ahead_gets_one_of_its_own(tmp_path: Path) -> None:
    store = make(tmp_path)
    store.key_for("thread", "warm-up")
    wait_for_pool(store)
    long_ref = "thread/" + "x" * 5000  # LangGraph takes any thread id
    key_id, dek = store.key_for("thread", long_ref)
    h = store._scope_hash("thread", long_ref)
    marker = store.directory / "scopes" / f"{h}.0"
    assert json.loads(marker.read_text())["scope_ref"] == long_ref and marker.stat().st_size < len(long_ref) + 200
    assert not (store.directory / ks.READY_DIR / key_id).exists()
    other = reopen(store)
    assert other.key_for("thread", long_ref) == (key_id, dek)
    assert [k.key_id for k in other.destroy("thread", long_ref).keys] == [key_id]
    store.close()
    other.close()


def test_two_writers_racing_for_one_scope_give_it_one_key(tmp_path: Path) -> None:
    base = make(tmp_path)
    stores = [reopen(base) for _ in range(6)]
    for i, s in enumerate(stores):
        s.key_for("subject", f"warm-up-{i}")  # each store's pool starts with its first new scope
        wait_for_pool(s, 2)
    got: list[tuple[str, bytes]] = []
    barrier = threading.Barrier(len(stores))

    def take(s: KeyStore) -> None:
        barrier.wait()
        got.append(s.key_for("thread", "contended"))

    threads = [threading.Thread(target=take, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1  # every writer encrypts the scope's events under the same key
    markers = [p for p in (base.directory / "scopes").iterdir() if p.name.endswith(".0")]
    assert len({json.loads(p.read_text())["key_id"] for p in markers}) == len(markers)
    assert base.destroy("thread", "contended").keys[0].key_id == got[0][0]
    for s in stores:
        s.close()


def test_a_shredded_scope_gets_its_next_key_at_the_next_marker(tmp_path: Path) -> None:
    store = make(tmp_path)
    first_id, _ = store.key_for("execution", "run-1")
    destroyed = store.destroy("execution", "run-1")
    assert [k.key_id for k in destroyed.keys] == [first_id]
    second_id, _ = store.key_for("execution", "run-1")
    assert second_id != first_id
    names = sorted(p.name.rsplit(".", 1)[1] for p in (store.directory / "scopes").iterdir())
    assert names == ["0", "1"]
    again = store.destroy("execution", "run-1")
    assert [k.key_id for k in again.keys] == [first_id, second_id] and not again.already
    assert store.data_key(first_id) is None and store.data_key(second_id) is None
    store.close()


def test_a_key_store_with_the_older_marker_directories_reads_extends_and_shreds(tmp_path: Path) -> None:
    store = make(tmp_path)
    # The older layout, as key stores before keys were made ahead wrote it: the scope in the key file, an empty
    # marker in scopes/<hash>/.
    h = store._scope_hash("subject", "alice")
    key_id, dek = store._new_key("subject", store.scope_ref("subject", "alice"), h)
    (store.directory / "scopes" / h).mkdir()
    (store.directory / "scopes" / h / key_id).write_bytes(b"")
    old = reopen(store)
    assert old.key_for("subject", "alice") == (key_id, dek)
    assert [(k.key_id, k.scope) for k in old.keys()] == [(key_id, "subject")]
    destroyed = old.destroy("subject", "alice")
    assert [k.key_id for k in destroyed.keys] == [key_id]
    new_id, _ = old.key_for("subject", "alice")  # the scope keeps its layout
    assert (store.directory / "scopes" / h / new_id).exists()
    assert not list((store.directory / "scopes").glob(f"{h}.*"))
    assert {k.key_id for k in old.destroy("subject", "alice").keys} == {key_id, new_id}  # sorted by id there
    with pytest.raises(UnknownScopeError):
        old.destroy("subject", "bob")
    old.close()
    store.close()


def test_a_damaged_marker_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    store = make(tmp_path)
    key_id, _ = store.key_for("thread", "t")
    (marker,) = (store.directory / "scopes").iterdir()
    marker.write_bytes(b"{not json")
    other = reopen(store)
    with pytest.raises(KeyStoreError, match="damaged"):
        other.key_for("thread", "t")
    with pytest.raises(KeyStoreError, match="damaged"):
        list(other.keys())
    store.close()


def test_a_provider_with_a_kms_key_per_scope_makes_no_key_ahead(tmp_path: Path) -> None:
    store = make(tmp_path)
    made: list[str] = []

    class PerScope(LocalKek):
        poolable = False

        def wrap(self, key_id: str, dek: bytes) -> tuple[bytes, str | None]:
            made.append(key_id)
            return super().wrap(key_id, dek)

    store.provider = PerScope(store.provider.path, bytes.fromhex(store.provider.path.read_text().strip()))
    for i in range(3):
        store.key_for("subject", f"p{i}-{secrets.token_hex(2)}")
    time.sleep(0.2)
    assert len(made) == 3 and store._pool == [] and store._pool_thread is None
    store.close()
