"""Publishing checkpoints as they are made, and verifying the ledger against what was published."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from provenance_testkit import make_event

from cli.main import ztcp
from provenance import Ledger, NotePublisher, PublishConflict
from server.bootstrap import system_keys
from server.ledger import ledger_from_settings
from server.settings import load_settings


def test_every_new_checkpoint_is_published_once(tmp_path: Path) -> None:
    pub = tmp_path / "witness"
    with Ledger(tmp_path / "l.db", Ed25519PrivateKey.generate(), "o", checkpoint_every=10,
                publish=NotePublisher(pub)) as led:
        for i in range(0, 35, 5):
            led.append([make_event(j) for j in range(i, i + 5)])
        led.checkpoint()  # on demand too
        stored = {size: note for size, _root, _t, note in led.raw_checkpoints()}
    files = {int(p.stem): p.read_text() for p in pub.glob("*.note")}
    assert files == stored and sorted(files) == [10, 20, 30, 35]


def test_a_different_note_for_a_published_size_is_a_fork_and_is_not_overwritten(tmp_path: Path) -> None:
    pub = NotePublisher(tmp_path / "witness")
    pub(5, "origin\n5\nAAAA\n\n— sig one\n")
    pub(5, "origin\n5\nAAAA\n\n— sig one\n")  # the same note again: fine
    with pytest.raises(PublishConflict, match="two histories"):
        pub(5, "origin\n5\nBBBB\n\n— sig two\n")
    assert pub.path_for(5).read_text().endswith("sig one\n")
    assert [p.name for p in (tmp_path / "witness").iterdir()] == ["000000000005.note"]


def test_a_publishing_failure_never_fails_the_append(tmp_path: Path) -> None:
    pub = tmp_path / "witness"
    with Ledger(tmp_path / "l.db", Ed25519PrivateKey.generate(), "o", checkpoint_every=2,
                publish=NotePublisher(pub)) as led:
        led.append([make_event(0), make_event(1)])
        shutil.rmtree(pub)
        pub.write_text("the mount went away")  # the witness location is gone (even root cannot write)
        assert [r.seq for r in led.append([make_event(2), make_event(3)])] == [2, 3]
        assert led.publish_error and "NotADirectoryError" in led.publish_error
        assert led.latest_checkpoint().size == 4  # signed and stored all the same
        pub.unlink()
        pub.mkdir()
        led.append([make_event(4), make_event(5)])
        assert led.publish_error is None and (pub / "000000000006.note").exists()


def test_verify_against_the_publish_directory_catches_a_full_rewrite(ztcp_home: Path, tmp_path: Path) -> None:
    """Someone holding the local key rebuilds the whole ledger consistently and re-signs it: only
    the checkpoints published as they were made show it."""
    pub = tmp_path / "witness"
    settings = load_settings(checkpoint_publish_dir=pub)
    system_keys(settings).ensure_all()
    with ledger_from_settings(settings) as led:
        led.append([make_event(i) for i in range(40)])
        led.checkpoint()
        path = led.path
    env = {"ZTCP_HOME": str(ztcp_home), "ZTCP_CHECKPOINT_PUBLISH_DIR": str(pub)}
    ok = CliRunner().invoke(ztcp, ["audit", "verify", "--published", str(pub)], env=env)
    assert ok.exit_code == 0, ok.output
    assert list(pub.glob("*.note"))

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with ledger_from_settings(load_settings()) as forged:  # same key, no publishing: a quiet rewrite
        forged.append([make_event(i + 1000) for i in range(40)])
        forged.checkpoint()
    alone = CliRunner().invoke(ztcp, ["audit", "verify"], env={"ZTCP_HOME": str(ztcp_home)})
    assert alone.exit_code == 0  # self-consistent and validly signed...
    caught = CliRunner().invoke(ztcp, ["audit", "verify", "--published", str(pub)], env={"ZTCP_HOME": str(ztcp_home)})
    assert caught.exit_code == 3 and "rewritten" in caught.output  # ...but not the history that was published
