"""LangGraph integration (``pip install wormjournal[langgraph]``).

- :class:`ArchivingSaver` wraps any checkpoint saver and archives every checkpoint and
  pending write in the journal, encrypted in the thread's key scope.
- :class:`JournalSaver` is a complete checkpoint saver on the journal alone.
- :class:`RunRecorder` records a run's node starts and ends, state updates and errors.

Only this package imports LangGraph; the core never does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ArchivingSaver", "JournalSaver", "RunRecorder"]
_MODULES = {"ArchivingSaver": "archiving", "JournalSaver": "saver", "RunRecorder": "capture"}


def __getattr__(name: str) -> Any:
    # Each piece is imported when first asked for: a saver alone needs no callback machinery.
    if name in _MODULES:
        import importlib

        try:
            module = importlib.import_module(f".{_MODULES[name]}", __name__)
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in ("langgraph", "langchain_core"):
                raise
            raise ImportError(f"wormjournal.integrations.langgraph.{name} needs LangGraph, which is not installed "
                              f"({e}): pip install 'wormjournal[langgraph]'", name=e.name) from e
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
