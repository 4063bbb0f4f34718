"""The local-directory store: one file per object, written once, made read-only.

A put writes a temp file, fsyncs it, hard-links it into place (``link`` fails
if the name exists, so nothing is ever replaced), fsyncs the directory, then
drops the temp name. Names starting with ``.`` are the journal's working files
(the WAL) and are not objects.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConflictError, NotFoundError, StorageError, ValidationError
from .base import ObjectInfo, PutResult
from .names import check_name, is_safe_prefix

_TMP_RE = re.compile(r"\.tmp-[0-9a-f]{32}")  # a put in progress (written, not yet linked to its name)

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_synced(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Create a file (exclusively: FileExistsError when the name is taken) holding ``data``, fsync'd; its name is
    durable once the caller fsyncs its directory. A crash can leave it short."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600, exclusive: bool = False,
                      staged: Callable[[], None] | None = None) -> None:
    """Write a working file (a key, a record) whole or not at all: a temporary ``.<name>.<hex>.tmp`` beside it
    is written and fsync'd, then renamed over ``path`` (with ``exclusive``, linked to it: FileExistsError when the
    name is taken), and the directory fsync'd. ``staged`` runs between the two (a crash test's step). A crash
    leaves at most the temporary file, never a short or empty one."""
    directory, name = os.path.split(os.fspath(path))
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    create_synced(tmp, data, mode=mode)
    if staged is not None:
        staged()
    if exclusive:
        try:
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
    else:
        os.replace(tmp, path)
    fsync_dir(directory or ".")


def makedirs_durable(path: Path, mode: int = 0o755) -> None:
    """mkdir -p, fsyncing each parent whose entry was created. Directories are created with ``mode``
    less the umask: never writable by others, whatever the umask (0o700 for private working files)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=mode)
        except FileExistsError:
            continue
        fsync_dir(d.parent)


class LocalStore:
    """A Store on a local directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.url = str(self.root)

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    def spec(self) -> dict[str, Any]:
        """How another process opens this store (:func:`wormjournal.storage.open_store_spec`)."""
        return {"kind": "local", "root": str(self.root)}

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*check_name(name).split("/"))

    def put(self, name: str, data: bytes) -> PutResult:
        path = self._path(name)
        try:
            makedirs_durable(path.parent)
            tmp = path.parent / f".tmp-{uuid.uuid4().hex}"  # never listed (_TMP_RE): a put in progress
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                    # read-only, and readable only by whom the umask lets read (0o400 under umask 077)
                    os.fchmod(fd, os.fstat(fd).st_mode & READ_ONLY)
                finally:
                    os.close(fd)
                try:
                    os.link(tmp, path)
                    created = True
                except FileExistsError:
                    created = False
            finally:
                os.unlink(tmp)
            fsync_dir(path.parent)
        except OSError as e:
            raise StorageError(f"cannot write {name} in {self.url}: {e}") from e
        if not created:
            existing = self.get(name)
            if existing != data:
                raise ConflictError(
                    f"{name} already exists in {self.url} with different bytes "
                    f"({len(existing)} stored, {len(data)} offered)"
                )
        return PutResult(name=name, size=len(data), created=created)

    def get(self, name: str) -> bytes:
        path = self._path(name)
        try:
            # O_NONBLOCK: a FIFO planted under an object's name is refused, not waited on (no effect on a file).
            with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                if stat.S_ISDIR(mode):
                    raise IsADirectoryError(name)
                if not stat.S_ISREG(mode):
                    raise StorageError(f"cannot read {name} in {self.url}: not a regular file")
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise NotFoundError(f"{name} not found in {self.url}") from e
        except OSError as e:
            raise StorageError(f"cannot read {name} in {self.url}: {e}") from e

    def get_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Several ranges of one object, read through one open file."""
        path = os.path.join(self.root, check_name(name))  # a str, not a Path: a lookup reads tens of objects
        if ranges and min(map(min, ranges)) < 0:
            raise ValidationError("ranges", "starts and lengths must be >= 0")
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise NotFoundError(f"{name} not found in {self.url}") from e
        except OSError as e:
            raise StorageError(f"cannot read {name} in {self.url}: {e}") from e
        try:
            return [os.pread(fd, length, start) for start, length in ranges]
        except OSError as e:
            raise StorageError(f"cannot read {name} in {self.url}: {e}") from e
        finally:
            os.close(fd)

    def get_tail(self, name: str, length: int) -> tuple[bytes, int]:
        """The last ``length`` bytes of an object (all of it when shorter) and its size."""
        if length < 0:
            raise ValidationError("length", f"must be >= 0, not {length}")
        try:
            with open(self._path(name), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - length))
                return f.read(length), size
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise NotFoundError(f"{name} not found in {self.url}") from e
        except OSError as e:
            raise StorageError(f"cannot read {name} in {self.url}: {e}") from e

    def get_range(self, name: str, start: int, length: int) -> bytes:
        path = self._path(name)
        # A negative length would read the whole object; refuse, as S3 would ignore the range.
        if start < 0:
            raise ValidationError("start", f"must be >= 0, not {start}")
        if length < 0:
            raise ValidationError("length", f"must be >= 0, not {length}")
        try:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(length)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise NotFoundError(f"{name} not found in {self.url}") from e
        except OSError as e:
            raise StorageError(f"cannot read {name} in {self.url}: {e}") from e

    def head(self, name: str) -> ObjectInfo | None:
        try:
            st = self._path(name).stat()
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                return None
            raise StorageError(f"cannot stat {name} in {self.url}: {e}") from e
        if not stat.S_ISREG(st.st_mode):
            return None  # a directory is a prefix, not an object
        return ObjectInfo(name=name, size=st.st_size)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            raise NotFoundError(f"store {self.url} does not exist")
        # Walk only the directory the prefix names, then filter by the full prefix.
        if not is_safe_prefix(prefix):
            return  # no object can live there ("..", dot-directories); never walk outside the root
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*base.split("/")) if base else self.root
        if not start.is_dir():
            return
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self.root)
            if rel == ".":  # the writer's working files (.wal, .locks) at the top; anything else is listed
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for fn in filenames:
                if (rel == "." and fn.startswith(".")) or _TMP_RE.fullmatch(fn):
                    continue
                name = fn if rel == "." else f"{rel.replace(os.sep, '/')}/{fn}"
                if name.startswith(prefix):
                    st = os.stat(os.path.join(dirpath, fn))
                    found.append(ObjectInfo(name=name, size=st.st_size))
        found.sort(key=lambda o: o.name)
        yield from found
