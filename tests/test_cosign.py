"""C2SP cosignatures and the witness protocol's add-checkpoint bodies, against the specs.

The vectors are written from the specs (c2sp.org/tlog-cosignature, c2sp.org/tlog-witness), not from our code: the
signed message and the signature line are built here by hand with hashlib and the Ed25519 primitive, and the specs'
own examples (a cosignature line, an add-checkpoint request) are parsed as they are printed there.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wormjournal.errors import NoteError
from wormjournal.segments.cosign import (
    Cosigner,
    add_checkpoint_body,
    cosign,
    cosignatures,
    parse_add_checkpoint,
    signed_message,
)
from wormjournal.segments.notes import SigningKey, split_note

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NAME = "witness.example/w1"
TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"  # the specs' checkpoint
TIME = 1679315147  # the time line of the spec's example
# The same, fixed (Ed25519 is deterministic): a change of the format in code and test alike still shows here.
LINE = ("\u2014 witness.example/w1 519lMgAAAABkGFDLBuRDazBLVac2NE+Y+IjbjQOcXLfF9CSDZVUIoS83rE1nFZsVE8YiWV6Ngr7lV8"
        "H6bdoBQGP/l73euDMQ9k+bBQ==\n")
VKEY = "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
SPEC_COSIGNATURE = ("\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJs"
                    "X3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n")


def test_a_cosignature_is_what_the_spec_builds() -> None:
    pub = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_hash = hashlib.sha256(NAME.encode() + b"\n" + b"\x04" + pub).digest()[:4]
    message = b"cosignature/v1\n" + b"time 1679315147\n" + TEXT.encode()
    blob = key_hash + TIME.to_bytes(8, "big") + KEY.sign(message)
    expected = "\u2014 " + NAME + " " + base64.b64encode(blob).decode() + "\n"
    assert signed_message(TEXT, TIME) == message
    assert cosign(KEY, NAME, TEXT, TIME) == expected == LINE
    cosigner = Cosigner(NAME, KEY.public_key())
    assert cosigner.vkey() == VKEY and Cosigner.from_vkey(VKEY).key_hash == key_hash == cosigner.key_hash


def test_a_cosigned_note_verifies_for_its_cosigner_alone() -> None:
    log = SigningKey.generate("example.com/behind-the-sofa")
    note = log.sign_note(TEXT)
    cosigned = note + cosign(KEY, NAME, TEXT, TIME).encode()
    cosigner = Cosigner(NAME, KEY.public_key())
    other = Cosigner("witness.example/w2", Ed25519PrivateKey.generate().public_key())
    assert cosignatures(cosigned, [cosigner, other]) == {NAME: TIME}
    assert cosignatures(note, [cosigner]) == {}  # the log's own signature is not a cosignature
    # Another text, another time, another name: nothing verifies.
    assert cosignatures(log.sign_note(TEXT.replace("20852163", "20852164")) + LINE.encode(), [cosigner]) == {}
    later = LINE.replace("519lMgAAAABkGFDL", "519lMgAAAABkGFDM")
    assert cosignatures(note + later.encode(), [cosigner]) == {}
    assert cosignatures(cosigned, [Cosigner("witness.example/w9", KEY.public_key())]) == {}


def test_the_specs_example_cosignature_line_parses() -> None:
    example = ("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
               "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q"
               "1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n" + SPEC_COSIGNATURE)
    text, sigs = split_note(example.encode())
    assert text == TEXT
    witness = sigs[1]
    assert witness.name == "witness.example.com/w1" and len(witness.signature) == 72
    assert int.from_bytes(witness.signature[:8], "big") == TIME  # the example's time line


def test_bad_verifier_keys_and_names_are_refused() -> None:
    for bad in ("witness.example/w1+e75f6533+" + VKEY.rsplit("+", 1)[1],  # wrong key hash
                "witness.example/w1+e75f6532+" + base64.b64encode(b"\x01" + b"\x00" * 32).decode(),  # another type
                "no-plus-signs", "a+b+!!!"):
        with pytest.raises(NoteError):
            Cosigner.from_vkey(bad)
    with pytest.raises(NoteError):
        Cosigner("two words", KEY.public_key())
    with pytest.raises(NoteError):
        signed_message(TEXT, 2**63)


SPEC_REQUEST = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+"
    "zyWE+xeMcTOAYQ8=\n"
    "\u2014 example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5"
    "Rovnzv++qbSzm9Q=\n"
).encode()


def test_the_specs_add_checkpoint_request_parses_and_is_written_back_the_same() -> None:
    old, proof, note = parse_add_checkpoint(SPEC_REQUEST)
    assert old == 20852014 and len(proof) == 4 and all(len(h) == 32 for h in proof)
    assert split_note(note)[0] == TEXT
    assert add_checkpoint_body(old, proof, note) == SPEC_REQUEST
    assert parse_add_checkpoint(b"old 0\n\n" + note) == (0, [], note)


@pytest.mark.parametrize("body", [
    b"old 01\n\n" + SPEC_REQUEST.split(b"\n\n", 1)[1],  # a leading zero
    b"old -1\n\n" + SPEC_REQUEST.split(b"\n\n", 1)[1],
    b"new 5\n\n" + SPEC_REQUEST.split(b"\n\n", 1)[1],
    b"old 5\n" + b"\n".join([base64.b64encode(bytes(32))] * 64) + b"\n\n" + SPEC_REQUEST.split(b"\n\n", 1)[1],
    b"old 5\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw\n\n" + SPEC_REQUEST.split(b"\n\n", 1)[1],  # unpadded
    b"old 5\n" + base64.b64encode(bytes(31)) + b"\n\n" + SPEC_REQUEST.split(b"\n\n", 1)[1],  # not a hash
    b"old 5\n",  # no checkpoint
    b"old 5",
])
def test_bad_add_checkpoint_requests_are_refused(body: bytes) -> None:
    with pytest.raises(NoteError):
        parse_add_checkpoint(body)
