"""One error family: every exception class of the package is a JournalError, defined in wormjournal.errors
and exported from the package, so that one ``except JournalError`` catches whatever the library raises."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import wormjournal
from wormjournal import errors
from wormjournal.errors import JournalError


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(wormjournal.__path__, "wormjournal.")]
    return [n for n in names if not n.endswith("__main__")]  # __main__ runs the command line


@pytest.mark.parametrize("module", _modules())
def test_every_exception_class_is_a_journal_error_of_the_errors_module(module: str) -> None:
    if module.startswith("wormjournal.integrations"):
        pytest.importorskip("langgraph")
    mod = importlib.import_module(module)
    for name, obj in vars(mod).items():
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module:
            # Private control-flow exceptions never leave their module.
            assert name.startswith("_") or (issubclass(obj, JournalError) and module == "wormjournal.errors"), \
                f"{module}.{name} is an exception class outside the JournalError family of wormjournal.errors"


def test_every_error_is_exported_from_the_package() -> None:
    defined = {n for n, o in vars(errors).items() if inspect.isclass(o) and issubclass(o, JournalError)}
    assert defined <= set(wormjournal.__all__), sorted(defined - set(wormjournal.__all__))
    assert all(getattr(wormjournal, n) is getattr(errors, n) for n in defined)


def test_errors_carry_a_kind_and_a_hint_where_they_can() -> None:
    e = errors.IntegrityError("x")
    assert e.kind is None and e.hint
    assert errors.ValidationError("f", "bad").field == "f"
    assert isinstance(errors.ValidationError("f", "bad"), ValueError)  # callers catching ValueError still do
    assert issubclass(errors.KeyRetiredError, errors.ConfigError) and errors.KeyRetiredError.hint
