"""Builds the optional C extension wormjournal._native (the metadata is in pyproject.toml).

A machine without a C compiler still installs wormjournal: the extension is then left out and
wormjournal.native uses the pure-Python path (WORMJOURNAL_NATIVE=require makes its absence an error).
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 - no compiler, no headers: install without the extension
            self._skip(e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            self._skip(e)

    def _skip(self, error: Exception) -> None:
        if os.environ.get("WORMJOURNAL_NATIVE") == "require":
            raise error
        print(f"wormjournal: the C extension was not built ({error}); the pure-Python path is used",
              file=sys.stderr)


setup(
    ext_modules=[Extension("wormjournal._native", ["wormjournal/_native.c"], extra_compile_args=["-O2"])],
    cmdclass={"build_ext": OptionalBuildExt},
)
