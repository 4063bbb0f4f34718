"""Which object names a Store accepts: one rule for every backend.

A name is relative and ``/``-separated; no part is empty, ``.``, ``..`` or starts
with ``.`` (the journal's working files, such as the WAL, start with a dot and
are not objects), and it holds no NUL byte. Every backend refuses the same
names, so that a name that works on a local directory works on S3 and back.
"""

from __future__ import annotations

from ..errors import StorageError

NAME_HINT = "object names are relative, '/'-separated, with no empty, '.' or '..' part and no part starting with '.'"


def is_safe_part(part: str) -> bool:
    # Also refuses ".", ".." and the journal's dot-files, which are not objects.
    return part != "" and not part.startswith(".")


def is_safe_name(name: str) -> bool:
    """True when ``name`` may name an object."""
    return bool(name) and "\x00" not in name and all(is_safe_part(p) for p in name.split("/"))


def check_name(name: str) -> str:
    """``name`` itself when it may name an object; raises StorageError otherwise."""
    if not is_safe_name(name):
        raise StorageError(f"unsafe object name: {name!r}", hint=NAME_HINT)
    return name


def is_safe_prefix(prefix: str) -> bool:
    """True when objects could live under ``prefix``: its directory part is a safe name.

    The last part is a partial name and may be anything (``"seg"``, ``""``); a
    listing under an unsafe prefix (``"../"``, ``".wal/"``) is empty, never an error.
    """
    base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    return "\x00" not in prefix and (base == "" or is_safe_name(base))
