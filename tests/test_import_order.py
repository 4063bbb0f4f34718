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

    def imports(module: str) -> tuple[str, str]:
        r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False)
        return module, r.stderr.strip().splitlines()[-1] if r.returncode else ""

    with ThreadPoolExecutor(4) as pool:
        failed = {m: err for m, err in pool.map(imports, modules) if err}
    assert not failed, failed
