"""The named steps of the operations that take more than one durable step, for crash tests.

A seal, a key rotation, a shred and each retention action (set, hold, release, extend) call
:func:`reached` after each step that leaves something durable behind (a stored object, a file in
the key directory, a WAL frame). Whichever step a process dies after, the next open finishes the
operation or rolls it back (FORMAT.md 3.2, 3.3, 6.1 and 11); the crash tests check that by installing a
:data:`hook` that kills the process at the N-th time a step is reached (``tests/step_child.py``).
Nothing happens without a hook. This module imports nothing of the package, so every layer may
call it.

The steps, in the order an operation reaches them (``*``: once per object or key):

- seal: ``seal.start`` (the WAL is cut, nothing stored yet), then per segment
  ``seal.segment_stored``, ``seal.index_stored``, ``seal.manifest_stored``; ``seal.checkpoint_stored``
- rotate-key: ``rotate.start``, ``keys.secret_staged`` (a temporary file written, not yet linked),
  ``rotate.next_written``, ``keys.secret_staged``, ``rotate.entry_signed``, ``rotate.key_replaced``,
  ``rotate.public_key_stored``, ``rotate.entry_stored``, ``rotate.done``
- shred: ``shred.intent_written``, ``shred.tombstone_written*``, ``shred.key_erased*``,
  ``shred.keys_destroyed``, ``shred.stream_claimed``, ``shred.receipt_appended``,
  ``shred.receipt_recorded``, ``shred.done``
- retention set / hold / release / extend: ``retention.pending_written``, then
  ``retention.policy_stored``, ``retention.hold_set*`` or ``retention.retention_extended*``, then
  ``retention.event_appended``, the seal's steps, ``retention.done``
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["hook", "reached"]

#: Called with the step's name each time one is reached (tests set it; None in production).
hook: Callable[[str], None] | None = None


def reached(name: str) -> None:
    """Report that step ``name`` is done (durably). A no-op without a hook."""
    h = hook
    if h is not None:
        h(name)
