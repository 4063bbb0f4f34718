"""The optional C extension, ``wormjournal._native`` (built by setup.py), loaded once for the modules that use it.

It writes the same bytes as the pure-Python code it stands in for (the test suite runs the FORMAT.md vectors
and property tests through both). ``WORMJOURNAL_NATIVE=0`` leaves it out; ``=require`` makes its absence an
error (scripts/test). Its bulk SHA-256 is OpenSSL's, from the libcrypto Python's hashlib is linked with; where
there is none (``SHA`` false), the Merkle and row hashes stay in Python.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

MODE = os.environ.get("WORMJOURNAL_NATIVE", "1")
module: Any = None
if MODE != "0":
    try:
        module = importlib.import_module("wormjournal._native")
    except ImportError:
        if MODE == "require":
            raise

SHA = False
if module is not None:
    try:
        import _hashlib  # the OpenSSL-backed hashlib: its shared object is linked with libcrypto

        SHA = bool(module.use_libcrypto(_hashlib.__file__))
    except (ImportError, AttributeError, TypeError):  # built in, or no __file__: the Python path
        SHA = False
