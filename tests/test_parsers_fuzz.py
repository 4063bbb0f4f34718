"""Fuzzing the parsers of what an attacker can hand the verifier: signed notes, manifests,
checkpoints, key history entries and saved --since points.

Each parser either refuses its input with its documented error (``NoteError`` for the note
and text parsers, ``ConfigError`` for ``parse_anchor``) or returns an object whose text,
rendered again, is exactly the input: there is one encoding, so nothing is accepted that
the writer would not have written. No byte of a signed note can change without the
signature check failing. Inputs are (a) random text and bytes, (b) a valid text with one
line removed, duplicated, swapped, replaced, inserted or edited, (c) a valid signed note
with random bytes flipped.

The bugs these fuzzers found (typed errors leaking as ValueError, a second trusted signature
not checked, empty lines in a note's text) are fixed and pinned by the tests at the end.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wormjournal.errors import ConfigError
from wormjournal.journal.keys import key_name
from wormjournal.segments.keyhistory import ZERO, KeyEntry
from wormjournal.segments.manifest import ZERO_HASH, Checkpoint, IndexRoot, Manifest, checkpoint_origin
from wormjournal.segments.notes import SIG_PREFIX, NoteError, SigningKey, VerifyKey, open_note, raw_public, split_note
from wormjournal.verify.anchors import Anchor, parse_anchor

FUZZ = settings(max_examples=200, deadline=None, database=None)

JID = "01960000-0000-7000-8000-00000000abcd"
NAME = key_name(JID)
KEY = SigningKey(NAME, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
KEY2 = SigningKey(NAME, Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64))))


def _h(i: int) -> bytes:
    return hashlib.sha256(bytes([i])).digest()


MANIFEST = Manifest(
    journal=JID, stream="main", segment=5, first_seq=45, last_seq=53, events=9, prev_hash=_h(1), last_hash=_h(2),
    merkle_root=_h(3), object="segments/stream=main/date=2025-03-14/seg-000000000005.parquet", object_size=14775,
    object_sha256=_h(4), object_version="-", prev_manifest=_h(5), frontier=(_h(6), _h(7)),
    key_id=KEY.verify_key.key_id, time="2025-03-14T09:00:45.000000Z",
    index=(IndexRoot("events", 5, 5, 9, _h(8)), IndexRoot("executions", 4, 5, 6, _h(9))),
)
MANIFEST0 = Manifest(
    journal=JID, stream="main", segment=0, first_seq=0, last_seq=0, events=1, prev_hash=_h(10), last_hash=_h(11),
    merkle_root=_h(12), object="segments/stream=main/date=2025-03-14/seg-000000000000.parquet", object_size=1,
    object_sha256=_h(13), object_version="v1", prev_manifest=ZERO_HASH, frontier=(), key_id=KEY.verify_key.key_id,
    time="2025-03-14T09:00:00.000000Z",
)
CHECKPOINT = Checkpoint(checkpoint_origin(JID, "main"), 6, _h(20))
ENTRY0 = KeyEntry(JID, 0, raw_public(KEY.verify_key.public), "2025-03-14T09:00:00.000000Z", ZERO)
ENTRY1 = KeyEntry(JID, 1, raw_public(KEY2.verify_key.public), "2025-03-15T09:00:00.000000Z", ENTRY0.entry_hash())

# name -> (text, parser, signed note, signing keys)
TEXTS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "manifest": (MANIFEST.text(), Manifest.parse),
    "manifest0": (MANIFEST0.text(), Manifest.parse),
    "checkpoint": (CHECKPOINT.text(), Checkpoint.parse),
    "entry0": (ENTRY0.text(), KeyEntry.parse),
    "entry1": (ENTRY1.text(), KeyEntry.parse),
}
NOTES: dict[str, tuple[bytes, list[SigningKey]]] = {
    "manifest": (MANIFEST.sign(KEY), [KEY]),
    "manifest0": (MANIFEST0.sign(KEY), [KEY]),
    "checkpoint": (CHECKPOINT.sign(KEY), [KEY]),
    "entry0": (ENTRY0.sign([KEY]), [KEY]),
    "entry1": (ENTRY1.sign([KEY, KEY2]), [KEY, KEY2]),
}
ANCHORS = ("manifest", "manifest0", "checkpoint")
TRUSTED = [KEY.verify_key]


# -- what a parser may do -------------------------------------------------------------------------------------------


def parses_canonically(parse: Callable[[str], Any], text: str) -> Any:
    """``parse(text)`` raises NoteError or returns an object that renders back to exactly ``text``
    (a checkpoint: to its first three lines, which C2SP's extension lines may follow)."""
    try:
        obj = parse(text)
    except NoteError:
        return None
    rendered = obj.text()
    if parse == Checkpoint.parse:
        assert text.startswith(rendered), (text, rendered)
        assert text.endswith("\n")
    else:
        assert rendered == text
    if isinstance(obj, Manifest):
        assert len(obj.frontier) == obj.segment.bit_count()
        assert all(r.last == obj.segment for r in obj.index)
        assert Manifest.parse(rendered) == obj
    return obj


def splits_losslessly(data: bytes) -> tuple[str, list[Any]] | None:
    """split_note raises NoteError or returns text and signature lines that make up exactly ``data``."""
    try:
        text, sigs = split_note(data)
    except NoteError:
        return None
    assert sigs and text.endswith("\n")
    lines = "".join(f"{SIG_PREFIX}{s.name} {base64.b64encode(s.key_hash + s.signature).decode()}\n" for s in sigs)
    assert (text + "\n" + lines).encode() == data
    return text, sigs


def anchor_or_config_error(data: bytes, keys: list[VerifyKey]) -> Anchor | None:
    try:
        return parse_anchor(data, JID, keys)
    except ConfigError:
        return None


# -- strategies -------------------------------------------------------------------------------------------------------

_KEYS = ("wormjournal/manifest/v1", "journal", "stream", "segment", "first_seq", "last_seq", "events", "prev_hash",
         "last_hash", "merkle_root", "object", "object_size", "object_sha256", "object_version", "prev_manifest",
         "frontier", "key_id", "time", "index", "wormjournal/key/v1", "entry", "public_key", "valid_from", "prev_entry")
# Characters that keep a field plausible (so that mutants still parse often) and some that must not be taken.
_CHAR = st.sampled_from(list("0123456789abcdefABCDEF-+=/Z:.T _\t\r\x00\u00b2\u0663\u2014\u00e9")) | st.characters()
_HEX = st.binary(min_size=32, max_size=32).map(bytes.hex)
_LINE = st.one_of(
    st.text(max_size=80),
    st.builds(lambda k, v: f"{k} {v}", st.sampled_from(_KEYS), st.text(_CHAR, max_size=70)),
    st.builds(lambda k, v: f"{k} {v}", st.sampled_from(_KEYS), _HEX | st.integers(0, 10**6).map(str)),
    st.builds(lambda kind, a, b, rows, root: f"index {kind} {a} {b} {rows} {root}",
              st.sampled_from(("events", "executions", "threads", "other")), st.integers(0, 6), st.integers(0, 6),
              st.integers(0, 99), _HEX),
    st.builds(lambda raw: base64.b64encode(raw).decode(), st.binary(min_size=30, max_size=34)),
)


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """``text`` with one line removed, duplicated, swapped, replaced, inserted or edited, or its line ends changed."""
    lines = text.split("\n")[:-1]
    op = draw(st.sampled_from(("remove", "duplicate", "swap", "replace", "insert", "edit", "edit", "edit", "ends")))
    i = draw(st.integers(0, len(lines) - 1))
    if op == "remove":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "swap":
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "replace":
        lines[i] = draw(_LINE)
    elif op == "insert":
        lines.insert(draw(st.integers(0, len(lines))), draw(_LINE))
    elif op == "edit":
        line = lines[i]
        j = draw(st.integers(0, len(line)))
        how = draw(st.sampled_from(("set", "insert", "delete")))
        c = draw(_CHAR)
        lines[i] = line[:j] + c + line[j + 1:] if how == "set" else line[:j] + c + line[j:] if how == "insert" else \
            line[:j] + line[j + 1:]
    out = "\n".join(lines) + "\n"
    if op == "ends":
        out = draw(st.sampled_from((out[:-1], out + "\n", out.replace("\n", "\r\n"), " " + out, out + " ")))
    return out


@st.composite
def flipped(draw: st.DrawFn, data: bytes) -> tuple[bytes, list[int]]:
    """``data`` with one to three bytes XORed with a non-zero value; and the positions."""
    out = bytearray(data)
    positions = []
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(out) - 1))
        out[i] ^= draw(st.integers(1, 255))
        positions.append(i)
    assume(bytes(out) != data)  # two flips of one byte may cancel
    return bytes(out), positions


def _note_shaped(text: str, name: str, blob: bytes) -> bytes:
    return f"{text}\n{SIG_PREFIX}{name} {base64.b64encode(blob).decode()}\n".encode()


_RANDOM_NOTES = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=300).map(lambda t: t.encode()),
    st.builds(_note_shaped, st.text(max_size=200), st.sampled_from((NAME, "x", "")), st.binary(max_size=80)),
    st.builds(_note_shaped, st.sampled_from([t for t, _ in TEXTS.values()]), st.sampled_from((NAME, "x")),
              st.binary(min_size=68, max_size=68)),
)


# -- sanity: the material is valid ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_the_valid_material_parses_and_opens(name: str) -> None:
    text, parse = TEXTS[name]
    assert parse(text).text() == text
    note, signers = NOTES[name]
    for k in signers:
        assert open_note(note, [k.verify_key]) == (text, k.verify_key)
    if name in ANCHORS:
        anchor = parse_anchor(note, JID, TRUSTED)
        assert anchor.finding is None and anchor.signed_by == KEY.verify_key.key_id


# -- (a) random text and bytes ----------------------------------------------------------------------------------------


@FUZZ
@given(name=st.sampled_from(sorted(TEXTS)), text=st.one_of(
    st.text(max_size=400),
    st.lists(_LINE, max_size=25).map(lambda ls: "".join(line + "\n" for line in ls)),
    st.builds(lambda head, ls: head + "\n" + "".join(line + "\n" for line in ls),
              st.sampled_from(("wormjournal/manifest/v1", "wormjournal/key/v1", checkpoint_origin(JID, "main"))),
              st.lists(_LINE, max_size=25)),
))
def test_text_parsers_on_random_text(name: str, text: str) -> None:
    parses_canonically(TEXTS[name][1], text)


@FUZZ
@given(data=_RANDOM_NOTES)
def test_note_parsers_on_random_bytes(data: bytes) -> None:
    splits_losslessly(data)
    with pytest.raises(NoteError):
        open_note(data, TRUSTED)
    anchor = anchor_or_config_error(data, TRUSTED)
    assert anchor is None or (anchor.finding is not None and anchor.finding.kind == "since_signature")


# -- (b) one line of a valid text mutated ---------------------------------------------------------------------


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(TEXTS)))
def test_text_parsers_on_a_mutated_line(data: st.DataObject, name: str) -> None:
    text, parse = TEXTS[name]
    parses_canonically(parse, data.draw(mutated(text)))


@FUZZ
@given(data=st.data(), name=st.sampled_from(ANCHORS))
def test_parse_anchor_on_a_mutated_line_signed_anew(data: st.DataObject, name: str) -> None:
    """A mutant signed by the trusted key: refused as a usage error, or taken exactly for what its text says."""
    text = data.draw(mutated(TEXTS[name][0]))
    assume(text.endswith("\n") and "\n\n" not in text)
    note = KEY.sign_note(text)
    anchor = anchor_or_config_error(note, TRUSTED)
    if anchor is None:
        return
    assert anchor.finding is None and anchor.signed_by == KEY.verify_key.key_id
    if anchor.kind == "manifest":
        m = parses_canonically(Manifest.parse, text)
        assert m is not None and m.journal == JID
        assert (anchor.stream, anchor.size, anchor.manifest_hash) == (m.stream, m.segment + 1, m.manifest_hash())
    else:
        cp = parses_canonically(Checkpoint.parse, text)
        assert cp is not None and cp.origin == checkpoint_origin(JID, anchor.stream)
        assert (anchor.size, anchor.root) == (cp.tree_size, cp.root_hash)


# -- (c) bytes of a valid signed note flipped -----------------------------------------------------------------


def _line_span(note: bytes, signer: SigningKey) -> range:
    """The byte range of ``signer``'s signature line in ``note``."""
    line = signer.sign_note(split_note(note)[0]).split(b"\n\n", 1)[1]
    start = note.index(line)
    return range(start, start + len(line))


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(NOTES)), trusted_index=st.integers(0, 1))
def test_flipped_notes_never_verify(data: st.DataObject, name: str, trusted_index: int) -> None:
    note, signers = NOTES[name]
    trusted = signers[trusted_index % len(signers)]
    bad, positions = data.draw(flipped(note))
    split = splits_losslessly(bad)
    try:
        text, key = open_note(bad, [trusted.verify_key])
    except NoteError:
        pass
    else:
        # Accepted only when every changed byte is in the signature line of a key that is not trusted
        # (the signed-note rule: such lines are ignored), and then it is the original text.
        others = [k for k in signers if k is not trusted]
        positions = [p for p in set(positions) if bad[p] != note[p]]  # a byte flipped twice is unchanged
        assert others and all(any(p in _line_span(note, k) for k in others) for p in positions), positions
        assert (text, key) == (TEXTS[name][0], trusted.verify_key)
    if split is not None:
        parses_canonically(TEXTS[name][1], split[0])
    if name in ANCHORS:
        anchor = anchor_or_config_error(bad, TRUSTED)
        assert anchor is None or (anchor.finding is not None and anchor.finding.kind == "since_signature"), anchor


# -- bugs found by fuzzing, fixed; these pin the fixes -------------------

_ROOT = base64.b64encode(_h(30)).decode()


@pytest.mark.parametrize("size", ["\u00b2", "1" * 5000])
def test_checkpoint_size_of_non_ascii_digits_raises_note_error(size: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(f"{checkpoint_origin(JID, 'main')}\n{size}\n{_ROOT}\n")


def test_checkpoint_root_not_ascii_raises_note_error() -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(f"{checkpoint_origin(JID, 'main')}\n6\n\u00e9{_ROOT[1:]}\n")


@pytest.mark.parametrize("size, root", [("\u00b2", _ROOT), ("6", "\u00e9" + _ROOT[1:])])
def test_parse_anchor_of_a_bad_checkpoint_raises_config_error(size: str, root: str) -> None:
    note = _note_shaped(f"{checkpoint_origin(JID, 'main')}\n{size}\n{root}\n", NAME, bytes(68))
    with pytest.raises(ConfigError):
        parse_anchor(note, JID, TRUSTED)


@pytest.mark.parametrize("valid_from", ["garbage", "2025-03-14T09:00:00"])
def test_key_entry_with_a_bad_time_raises_note_error(valid_from: str) -> None:
    with pytest.raises(NoteError):
        KeyEntry.parse(ENTRY1.text().replace(ENTRY1.valid_from, valid_from))


@pytest.mark.parametrize("valid_from", ["20250315T140000+05:00", "2025-03-15T09:00:00Z"])
def test_key_entry_with_a_non_canonical_time_is_refused(valid_from: str) -> None:
    with pytest.raises(NoteError):
        KeyEntry.parse(ENTRY1.text().replace(ENTRY1.valid_from, valid_from))


def test_open_note_rejects_a_bad_signature_by_a_second_trusted_key() -> None:
    note, _ = NOTES["entry1"]
    span = _line_span(note, KEY2)
    i = span.stop - 10  # inside the base64 of KEY2's signature
    bad = note[:i] + (b"A" if note[i:i + 1] != b"A" else b"B") + note[i + 1:]
    assert split_note(bad)[1][1].signature != split_note(note)[1][1].signature
    with pytest.raises(NoteError):
        open_note(bad, [KEY.verify_key, KEY2.verify_key])


def test_a_checkpoint_with_an_empty_line_is_refused() -> None:
    text = CHECKPOINT.text() + "\n"
    sig = KEY.private.sign(text.encode())
    note = _note_shaped(text, NAME, KEY.verify_key.note_hash + sig)
    with pytest.raises(NoteError):
        Checkpoint.parse(open_note(note, TRUSTED)[0])
