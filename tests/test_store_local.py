"""The local-directory store: the Store contract, plus what only a directory can show."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from store_contract import StoreContract

from wormjournal.errors import ConflictError, NotFoundError, StorageError
from wormjournal.storage import local as local_mod
from wormjournal.storage import open_store
from wormjournal.storage.local import LocalStore, makedirs_durable


class TestLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        root = tmp_path / "store"
        root.mkdir()
        return LocalStore(root)


# -- local-only behaviour --------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "store"
    r.mkdir()
    return r


def _all_entries(root: Path) -> set[str]:
    """Every file under root, dot-files included, as relative POSIX paths."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_stored_files_are_read_only(root: Path) -> None:
    store = LocalStore(root)
    store.put("segments/s1", b"one")
    store.put("top", b"")
    for name in ("segments/s1", "top"):
        mode = stat.S_IMODE((root / name).stat().st_mode)
        assert mode & 0o222 == 0, f"{name} has write bits: {oct(mode)}"
        assert mode & stat.S_IRUSR, f"{name} is not readable: {oct(mode)}"


def test_identical_put_leaves_the_file_untouched(root: Path) -> None:
    store = LocalStore(root)
    store.put("a/b", b"data")
    before = (root / "a/b").stat()
    assert store.put("a/b", b"data").created is False
    after = (root / "a/b").stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size, after.st_mode) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
        before.st_mode,
    )


def test_conflicting_put_leaves_the_file_untouched(root: Path) -> None:
    store = LocalStore(root)
    store.put("a/b", b"data")
    before = (root / "a/b").stat()
    with pytest.raises(ConflictError):
        store.put("a/b", b"other")
    after = (root / "a/b").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (root / "a/b").read_bytes() == b"data"


def test_no_temp_files_are_left_behind(root: Path) -> None:
    store = LocalStore(root)
    store.put("x/one", b"1")
    store.put("x/one", b"1")  # identical again
    with pytest.raises(ConflictError):
        store.put("x/one", b"2")
    store.put("two", b"22")
    store.put("x/y/z/three", os.urandom(100_000))
    assert _all_entries(root) == {"x/one", "two", "x/y/z/three"}


def test_no_temp_file_is_left_behind_when_the_write_fails(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(root)
    store.put("x/keep", b"k")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(local_mod.os, "fsync", failing_fsync)
    with pytest.raises(StorageError) as exc:
        store.put("x/new", b"data")
    assert not isinstance(exc.value, ConflictError)
    assert "x/new" in str(exc.value)
    monkeypatch.undo()
    assert store.head("x/new") is None
    assert _all_entries(root) == {"x/keep"}


def test_files_starting_with_a_dot_are_not_objects(root: Path) -> None:
    """The writer's working files at the top (.wal, .locks) and a put in progress are not objects; any
    other dot-named file is listed, so that verify reports it as a stray (FORMAT.md section 9)."""
    store = LocalStore(root)
    store.put("segments/s1", b"1")
    (root / ".wal").mkdir()
    (root / ".wal" / "000001.wal").write_bytes(b"frames")
    (root / ".wal" / "sub").mkdir()
    (root / ".wal" / "sub" / "f").write_bytes(b"x")
    (root / ".lock").write_bytes(b"")
    (root / "segments" / f".tmp-{'ab' * 16}").write_bytes(b"partial")
    assert [o.name for o in store.list("")] == ["segments/s1"]
    assert [o.name for o in store.list("segments/")] == ["segments/s1"]
    (root / "segments" / ".hidden").write_bytes(b"planted")
    assert [o.name for o in store.list("segments/")] == ["segments/.hidden", "segments/s1"]
    assert list(store.list(".wal/")) == []
    assert list(store.list(".wal/sub/")) == []
    assert list(store.list(".")) == []


def test_list_does_not_escape_the_root(tmp_path: Path, root: Path) -> None:
    (tmp_path / "outside.txt").write_bytes(b"secret")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_bytes(b"secret")
    store = LocalStore(root)
    store.put("inside", b"1")
    for prefix in ("../", "../other/", "inside/../../", "./../"):
        assert list(store.list(prefix)) == [], prefix


def test_refused_names_write_nothing_anywhere(tmp_path: Path, root: Path) -> None:
    store = LocalStore(root)
    for name in ("../escape", "/abs-escape", "a/../../escape2"):
        with pytest.raises(StorageError):
            store.put(name, b"x")
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "escape2").exists()
    assert not Path("/abs-escape").exists()
    assert _all_entries(tmp_path) == set()


def test_put_creates_the_root_when_missing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "new" / "store")
    assert store.put("a/b", b"1").created
    assert (tmp_path / "new" / "store" / "a" / "b").read_bytes() == b"1"


def test_list_of_a_missing_root_raises_not_found(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "absent")
    with pytest.raises(NotFoundError):
        list(store.list(""))


def test_open_store_gives_a_local_store(root: Path) -> None:
    store = open_store(root)
    assert isinstance(store, LocalStore)
    assert store.url == str(root.absolute())
    assert open_store(store) is store


def test_makedirs_durable_creates_nested_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    real = local_mod.fsync_dir

    def recording_fsync_dir(path: Path) -> None:
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(local_mod, "fsync_dir", recording_fsync_dir)
    target = tmp_path / "a" / "b" / "c"
    makedirs_durable(target)
    assert target.is_dir()
    # Each created directory's entry is made durable in its parent.
    assert synced == [tmp_path, tmp_path / "a", tmp_path / "a" / "b"]

    synced.clear()
    makedirs_durable(target)  # exists already: nothing to do
    assert target.is_dir()
    assert synced == []

    makedirs_durable(target / "d")
    assert (target / "d").is_dir()
    assert synced == [target]
