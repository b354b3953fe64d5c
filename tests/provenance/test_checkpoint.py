"""C2SP signed notes and tlog checkpoints, against the Go sumdb/note published example."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from provenance import Checkpoint, CheckpointError, NoteSigner, NoteVerifier, open_checkpoint

# golang.org/x/mod/sumdb/note documentation example.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + (
    "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def _go_signer() -> NoteSigner:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    return NoteSigner(Ed25519PrivateKey.from_private_bytes(seed), "PeterNeumann")


def test_reproduces_go_example_byte_for_byte() -> None:
    s = _go_signer()
    assert s.verifier_key == GO_VKEY
    assert s.sign(GO_TEXT) == GO_NOTE
    assert NoteVerifier.from_vkey(GO_VKEY).open(GO_NOTE) == GO_TEXT


def test_tampered_note_refused() -> None:
    v = NoteVerifier.from_vkey(GO_VKEY)
    with pytest.raises(CheckpointError, match="does not verify"):
        v.open(GO_NOTE.replace("cryptography", "cryptographY"))
    with pytest.raises(CheckpointError, match="not signed by"):
        NoteVerifier.from_vkey(NoteSigner(Ed25519PrivateKey.generate(), "Other").verifier_key).open(GO_NOTE)


def test_checkpoint_round_trip_and_origin() -> None:
    s = NoteSigner(Ed25519PrivateKey.generate(), "ztcp.example/log")
    cp = Checkpoint("ztcp.example/log", 42, bytes(range(32)))
    note = s.sign(cp.body())
    assert note.startswith("ztcp.example/log\n42\n" + base64.b64encode(bytes(range(32))).decode() + "\n\n— ")
    assert open_checkpoint(note, [s.verifier()], "ztcp.example/log") == cp
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(note, [s.verifier()], "someone.else/log")


def test_forged_checkpoint_with_other_key_refused() -> None:
    real = NoteSigner(Ed25519PrivateKey.generate(), "ztcp.example/log")
    forger = NoteSigner(Ed25519PrivateKey.generate(), "ztcp.example/log")
    note = forger.sign(Checkpoint("ztcp.example/log", 7, bytes(32)).body())
    with pytest.raises(CheckpointError):
        open_checkpoint(note, [real.verifier()], "ztcp.example/log")


@given(st.binary(min_size=1, max_size=200))
def test_garbage_never_verifies(blob: bytes) -> None:
    text = blob.decode("latin-1")
    with pytest.raises(CheckpointError):
        open_checkpoint(text, [NoteVerifier.from_vkey(GO_VKEY)])


@given(st.integers(0, len(GO_NOTE) - 1), st.characters(codec="utf-8"))
def test_any_single_character_change_detected(pos: int, ch: str) -> None:
    if GO_NOTE[pos] == ch:
        return
    forged = GO_NOTE[:pos] + ch + GO_NOTE[pos + 1 :]
    with pytest.raises(CheckpointError):
        NoteVerifier.from_vkey(GO_VKEY).open(forged)
