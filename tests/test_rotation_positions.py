"""Key validity by position (FORMAT.md 6.1): a rotation fixes, per stream, the segment from which the new key
signs; running writers of the same key directory switch there, even while they seal during the rotation."""

from __future__ import annotations

import threading
from pathlib import Path

from wormjournal import Journal, JournalConfig, verify_store
from wormjournal.trust import load_trust

CFG = JournalConfig(seal_max_age_seconds=None, row_group_rows=4)


def test_a_rotation_fixes_each_streams_cutover_and_running_writers_switch(tmp_path: Path) -> None:
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=CFG) as main:
        first = main.verify_key
        with Journal.open(store, key_dir=keys, stream="side", config=CFG) as side:
            for n in range(2):
                side.append("node_completed", "run-side", {"n": n})
                side.seal()
            main.append("node_completed", "run-main", {})
            main.seal()
            new = main.rotate_key()
            ring = load_trust(main.store).ring
            assert dict(ring.entries[1].cutovers or {}) == {"main": 1, "side": 2}
            side.append("node_completed", "run-side", {"n": 2})
            (m,) = side.seal()  # the side writer signs its segment 2 with the new key, as the cutover says
            assert m.segment == 2 and m.key_id == new.key_id
            assert ring.valid_entry("side", 1) == 0 and ring.valid_entry("side", 2) == 1
            assert ring.valid_entry("other", 0) == 1  # a stream that came after the rotation: the new key only
    report = verify_store(store, public_keys=[first])
    assert report.ok, report.to_text()
    assert report.keys_used == {first.key_id: 3, new.key_id: 1}


def test_seals_during_a_rotation_never_cross_the_cutover(tmp_path: Path) -> None:
    """A writer sealing in a loop while another stream's writer rotates the key: the signing lock orders
    them, so no manifest is signed by the retired key at or after its stream's cutover."""
    store, keys = tmp_path / "store", tmp_path / "keys"
    with Journal.create(store, key_dir=keys, config=CFG) as main:
        first = main.verify_key
        main.append("node_completed", "run-main", {})
        main.seal()
        with Journal.open(store, key_dir=keys, stream="side", config=CFG) as side:
            stop = threading.Event()
            errors: list[BaseException] = []

            def seal_loop() -> None:
                n = 0
                try:
                    while not stop.is_set():
                        side.append("node_completed", "run-side", {"n": n})
                        side.seal()
                        n += 1
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            t = threading.Thread(target=seal_loop)
            t.start()
            try:
                for _ in range(3):
                    main.rotate_key()
            finally:
                stop.set()
                t.join()
            assert not errors, errors
    report = verify_store(store, public_keys=[first])
    assert report.ok, report.to_text()
    assert len(report.key_history) == 4
