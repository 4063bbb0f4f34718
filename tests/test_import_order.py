"""Every module imports on its own, first, in a fresh interpreter: the format modules import
``storage.layout``, whose package also holds the backends, so a backend that imported a format module
back would close a cycle that import-linter (which treats layout as format code) cannot see."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import wormjournal

LOW = ("wormjournal.events", "wormjournal.payload", "wormjournal.errors", "wormjournal.segments",
       "wormjournal.storage", "wormjournal.trust")


def test_each_low_layer_module_imports_first() -> None:
    modules = [m.name for m in pkgutil.walk_packages(wormjournal.__path__, "wormjournal.") if m.name.startswith(LOW)]
    assert len(modules) > 20

    def imports(module: str, show: bool = False) -> tuple[str, str, str]:
        code = f"import sys, {module}" + ("; print(' '.join(sys.modules))" if show else "")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        return module, r.stderr.strip().splitlines()[-1] if r.returncode else "", r.stdout

    # Importing any submodule runs the package's __init__ first: a module it imports is imported in its order
    # whichever module a fresh interpreter asks for, so one interpreter stands for all of those.
    _, err, loaded = imports("wormjournal", show=True)
    assert not err, err
    with ThreadPoolExecutor(4) as pool:
        failed = {m: e for m, e, _ in pool.map(imports, [m for m in modules if m not in loaded.split()]) if e}
    assert not failed, failed
