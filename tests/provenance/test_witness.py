"""Witnesses: checkpoints a host owner cannot forge (issue #13, finding 4).

Whoever owns the ledger's host can rewrite the file and, with a local key, re-sign it; plain
``audit verify`` then passes. A witness in its own home cosigns only checkpoints that extend what
it cosigned before: it refuses the rewrite, and its earlier cosignatures no longer match the
rewritten ledger, so ``audit verify --witness-key`` fails with exit 3.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from provenance_testkit import make_event

from cli.main import ztcp
from provenance import Ledger
from provenance.checkpoint import Checkpoint, NoteSigner, NoteVerifier
from provenance.errors import CheckpointError, IntegrityError
from provenance.witness import (
    CosignatureSigner,
    CosignatureVerifier,
    TrustedLog,
    Witness,
    WitnessEndpoint,
    WitnessError,
    Witnessing,
    add_checkpoint_body,
    create_witness_app,
    verify_witnessed,
)
from server.ledger import ledger_from_settings
from server.settings import load_settings
from server.witness_home import init_home, open_witness, trust_log

ORIGIN = "ztcp.test/provenance"


def _ledger(path: Path, key: Ed25519PrivateKey) -> Ledger:
    return Ledger(path, key, ORIGIN, checkpoint_every=10_000, checkpoint_interval=3600)


def _append(ledger: Ledger, start: int, n: int) -> None:
    ledger.append([make_event(i) for i in range(start, start + n)])


@pytest.fixture
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def witness(tmp_path: Path, log_key: Ed25519PrivateKey) -> Iterator[Witness]:
    log_verifier = _ledger(tmp_path / "probe.db", log_key).signer.verifier()
    w = Witness(tmp_path / "witness" / "witnessed.db", CosignatureSigner(Ed25519PrivateKey.generate(), "w1"),
                [TrustedLog(ORIGIN, log_verifier)])
    yield w
    w.close()


def test_cosignatures_follow_c2sp_and_bind_the_tree() -> None:
    signer = CosignatureSigner(Ed25519PrivateKey.generate(), "witness.example")
    verifier = CosignatureVerifier.from_vkey(signer.verifier_key)
    body = Checkpoint(ORIGIN, 7, b"\x01" * 32).body()
    line = signer.cosign(body, 1_700_000_000)
    assert line.startswith("— witness.example ") and verifier.verify(body, line) == 1_700_000_000
    with pytest.raises(CheckpointError):
        verifier.verify(Checkpoint(ORIGIN, 7, b"\x02" * 32).body(), line)  # another tree
    with pytest.raises(CheckpointError, match="not a witness"):
        CosignatureVerifier.from_vkey(NoteSigner(Ed25519PrivateKey.generate(), "log").verifier_key)


def test_the_witness_follows_the_log_and_refuses_a_rewritten_history(
        tmp_path: Path, log_key: Ed25519PrivateKey, witness: Witness) -> None:
    honest = _ledger(tmp_path / "honest.db", log_key)
    _append(honest, 0, 5)
    first = honest.checkpoint()
    witness.add_checkpoint(add_checkpoint_body(0, [], first.note))
    _append(honest, 5, 6)
    second = honest.checkpoint()
    with pytest.raises(WitnessError) as stale:  # it must say from which size
        witness.add_checkpoint(add_checkpoint_body(0, [], second.note))
    assert stale.value.status == 409 and stale.value.size == 5
    line = witness.add_checkpoint(add_checkpoint_body(5, honest.consistency_proof(5, 11), second.note))
    assert CosignatureVerifier.from_vkey(witness.signer.verifier_key).verify(
        second.note[: second.note.rfind("\n\n") + 1], line)
    # The host owner rewrites history (other events), keeps the key, signs a longer tree.
    forged = _ledger(tmp_path / "forged.db", log_key)
    _append(forged, 100, 14)
    fake = forged.checkpoint()
    with pytest.raises(WitnessError) as fork:
        witness.add_checkpoint(add_checkpoint_body(11, forged.consistency_proof(11, 14), fake.note))
    assert fork.value.status == 422
    assert witness.latest(ORIGIN)[0] == 11  # still the honest tree
    with pytest.raises(WitnessError) as unknown:
        other = Ledger(tmp_path / "other.db", log_key, "another/log")
        _append(other, 0, 1)
        witness.add_checkpoint(add_checkpoint_body(0, [], other.checkpoint().note))
    assert unknown.value.status == 403


def _serve(witness: Witness, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(create_witness_app(witness), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread


def test_the_ledger_sends_every_checkpoint_and_verify_catches_the_rewrite(
        tmp_path: Path, ztcp_home: Path, unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The witness in its own home, trusting this installation's checkpoint key.
    settings = load_settings()
    ledger = ledger_from_settings(settings)
    vkey_log, origin = ledger.signer.verifier_key, ledger.origin
    ledger.close()
    whome = tmp_path / "witness-home"
    wkey = init_home(whome, "bureau-witness", ztcp_home)
    trust_log(whome, origin, vkey_log)
    witness = open_witness(whome)
    server, thread = _serve(witness, unused_tcp_port)
    try:
        monkeypatch.setenv("ZTCP_WITNESSES", f'[{{"url": "http://127.0.0.1:{unused_tcp_port}", "key": "{wkey}"}}]')
        from server.runtime import Runtime

        rt = Runtime(load_settings())
        try:
            for start in (0, 7, 20):
                rt.ledger.append([make_event(i) for i in range(start, start + 3)])
                rt.ledger.checkpoint()
            rt.witnessing.flush()
            assert rt.witnessing.status() == {"bureau-witness": {"cosigned_size": 9, "error": None}}
        finally:
            rt.close()
        kept = sorted(p.name for p in (ztcp_home / "witnessed").iterdir())
        # Checkpoints queued while the witness was busy are skipped for the newest (it extends them).
        assert kept[-1] == f"{9:012d}.bureau-witness.cosig" and set(kept) <= {
            f"{n:012d}.bureau-witness.cosig" for n in (3, 6, 9)}
        ok = CliRunner().invoke(ztcp, ["audit", "verify", "--witness-key", wkey])
        assert ok.exit_code == 0, ok.output
        # The host owner rewrites the ledger file and re-signs it with the local key.
        db = ztcp_home / "provenance.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        forged = ledger_from_settings(load_settings())
        forged.append([make_event(i) for i in range(500, 512)])
        forged.checkpoint()
        forged.close()
        plain = CliRunner().invoke(ztcp, ["audit", "verify"])
        assert plain.exit_code == 0, plain.output  # on its own the rewrite is self-consistent
        caught = CliRunner().invoke(ztcp, ["audit", "verify", "--witness-key", wkey])
        assert caught.exit_code == 3 and "witness-mismatch" in caught.output, caught.output
        assert witness.latest(origin)[0] == 9
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        witness.close()


def test_a_truncated_ledger_below_a_witnessed_size_is_caught(tmp_path: Path, log_key: Ed25519PrivateKey) -> None:
    ledger = _ledger(tmp_path / "l.db", log_key)
    _append(ledger, 0, 4)
    cp = ledger.checkpoint()
    signer = CosignatureSigner(Ed25519PrivateKey.generate(), "w2")
    (tmp_path / "cosigs").mkdir()
    (tmp_path / "cosigs" / f"{8:012d}.w2.cosig").write_text(signer.cosign(cp.note[: cp.note.rfind("\n\n") + 1], 1))
    with pytest.raises(IntegrityError) as exc:
        verify_witnessed(ledger.root, ledger.size, ORIGIN, tmp_path / "cosigs",
                         [CosignatureVerifier.from_vkey(signer.verifier_key)])
    assert exc.value.kind == "truncated"


def test_a_witness_down_never_blocks_appends(tmp_path: Path, log_key: Ed25519PrivateKey,
                                             unused_tcp_port: int) -> None:
    ledger = _ledger(tmp_path / "l.db", log_key)
    signer = CosignatureSigner(Ed25519PrivateKey.generate(), "w3")
    witnessing = Witnessing([WitnessEndpoint(f"http://127.0.0.1:{unused_tcp_port}",
                                             CosignatureVerifier.from_vkey(signer.verifier_key))],
                            ledger.consistency_proof, tmp_path / "cosigs", timeout=0.5)
    ledger.publish = witnessing
    try:
        started = time.perf_counter()
        _append(ledger, 0, 3)
        ledger.checkpoint()
        assert time.perf_counter() - started < 0.4  # the append and checkpoint did not wait for it
        witnessing.flush()
        assert witnessing.status()["w3"]["error"].startswith("unreachable")
        assert ledger.size == 3
    finally:
        witnessing.close()


def test_witness_home_is_its_own(tmp_path: Path) -> None:
    from server.errors import ConfigError

    with pytest.raises(ConfigError, match="own home"):
        init_home(tmp_path / "h", "w", tmp_path / "h")
    init_home(tmp_path / "w", "w")
    assert (tmp_path / "w").stat().st_mode & 0o777 == 0o700
    with pytest.raises(ConfigError, match="trusts no log"):
        open_witness(tmp_path / "w")
    with pytest.raises(CheckpointError):
        trust_log(tmp_path / "w", ORIGIN, "not-a-key")
    assert os.path.exists(tmp_path / "w" / "keyring.sealed")
    assert NoteVerifier  # the log keys a witness trusts are note verifier keys
