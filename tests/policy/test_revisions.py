"""Revision store: maker-checker, publishing, shadow, rollback, admin events, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from policy import (
    LifecycleRefused,
    PolicyError,
    RevisionNotFound,
    RevisionStore,
    ensure_initial_revision,
    load_pack,
    pack_from_files,
    verify_bundle,
)
from policy.bundle import SHADOW_SCOPE


@pytest.fixture
def store(tmp_path):
    s = RevisionStore.in_home(tmp_path / "home")
    yield s
    s.close()


def _variant(files: dict[str, bytes], deny: int) -> dict[str, bytes]:
    out = dict(files)
    config = json.loads(out["ztcp/config/data.json"])
    config["thresholds"]["deny"] = deny
    out["ztcp/config/data.json"] = (json.dumps(config, indent=2) + "\n").encode()
    return out


def _events(store, type_=None):
    return [e for e in store.iter_since(None) if type_ is None or e.type == type_]


@pytest.fixture
def published(store, base_files, signing_key):
    """r1 active (bootstrap), r2 proposed by alice."""
    ensure_initial_revision(store, pack_from_files(base_files), signing_key)
    store.propose(pack_from_files(_variant(base_files, 60)), author="alice", message="tighten deny")
    return store


def test_bootstrap_publishes_r1_once(store, base_files, signing_key):
    pack = pack_from_files(base_files)
    first = ensure_initial_revision(store, pack, signing_key)
    again = ensure_initial_revision(store, pack, signing_key)
    assert first.revision == again.revision == "r1"
    assert verify_bundle(first.bundle, [signing_key.public_key()]).digest == pack.digest
    assert [r.id for r in store.history()] == ["r1"]
    assert [e.type for e in _events(store)] == ["policy.propose", "policy.publish"]
    assert _events(store, "policy.publish")[0].reason == "bootstrap"


def test_bootstrap_is_safe_under_concurrent_first_starts(tmp_path, base_files, signing_key):
    pack = pack_from_files(base_files)
    results, errors = [], []

    def start() -> None:
        try:
            with RevisionStore.in_home(tmp_path / "shared") as s:
                results.append(ensure_initial_revision(s, pack, signing_key).revision)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(results) == {"r1"}
    with RevisionStore.in_home(tmp_path / "shared") as s:
        assert len(s.history()) == 1


def test_propose_records_parent_digest_files(published, base_files):
    r2 = published.get("r2")
    assert (r2.status, r2.parent, r2.author) == ("proposed", "r1", "alice")
    assert r2.digest == pack_from_files(_variant(base_files, 60)).digest
    assert r2.files == sorted(base_files)
    assert published.files("r2")["ztcp/config/data.json"] == _variant(base_files, 60)["ztcp/config/data.json"]
    assert published.pack("r2").data["ztcp"]["config"]["thresholds"]["deny"] == 60


def test_identical_content_is_not_proposed_twice(published, base_files):
    with pytest.raises(PolicyError, match="already revision r2"):
        published.propose(pack_from_files(_variant(base_files, 60)), author="bob", message="same")
    with pytest.raises(PolicyError, match="needs a message"):
        published.propose(pack_from_files(_variant(base_files, 61)), author="bob", message="  ")


def test_self_approval_refused_and_recorded(published):
    with pytest.raises(LifecycleRefused) as err:
        published.approve("r2", approver="alice")
    assert err.value.reason == "self_approval" and err.value.exit_code == 2
    assert published.get("r2").approvals == [] and published.get("r2").status == "proposed"
    refused = _events(published, "policy.refused")
    assert len(refused) == 1
    assert (refused[0].actor, refused[0].revision, refused[0].detail["code"]) == (
        "alice",
        "r2",
        "self_approval",
    )
    assert refused[0].digest == published.get("r2").digest


def test_unapproved_publish_refused(published, signing_key):
    with pytest.raises(LifecycleRefused) as err:
        published.publish("r2", actor="alice", signer=signing_key)
    assert err.value.reason == "not_approved"
    assert published.state().active == "r1"
    assert _events(published, "policy.refused")[-1].detail == {"action": "publish", "code": "not_approved"}


def test_approve_publish_and_verify(published, signing_key, base_files):
    before = published.state()
    r2 = published.approve("r2", approver="bob", comment="looks right")
    assert r2.status == "approved" and [a.approver for a in r2.approvals] == ["bob"]
    with pytest.raises(LifecycleRefused, match="already approved"):
        published.approve("r2", approver="bob")
    r2 = published.publish("r2", actor="alice", signer=signing_key)
    assert r2.status == "published" and r2.published_by == "alice"
    assert published.get("r1").status == "superseded"
    state = published.state()
    assert state.active == "r2" and state.generation > before.generation
    active = published.active()
    pack = verify_bundle(active.bundle, [signing_key.public_key()])
    assert pack.revision == "r2" and pack.digest == r2.digest
    assert pack.data["ztcp"]["config"]["thresholds"]["deny"] == 60
    assert published.bundle("r2") == active.bundle
    publish = _events(published, "policy.publish")[-1]
    assert (publish.actor, publish.revision, publish.digest) == ("alice", "r2", r2.digest)
    assert publish.detail["replaces"] == "r1"
    with pytest.raises(LifecycleRefused, match="already the active"):
        published.publish("r2", actor="alice", signer=signing_key)


def test_two_approvals_required(tmp_path, base_files, signing_key):
    with RevisionStore.in_home(tmp_path / "h2", required_approvals=2) as s:
        s.propose(pack_from_files(base_files), author="alice", message="m")
        s.approve("r1", approver="bob")
        assert s.get("r1").status == "proposed"
        with pytest.raises(LifecycleRefused, match="1 of 2"):
            s.publish("r1", actor="bob", signer=signing_key)
        assert s.approve("r1", approver="carol").status == "approved"
        assert s.publish("r1", actor="bob", signer=signing_key).status == "published"
    with pytest.raises(ValueError):
        RevisionStore.in_home(tmp_path / "h3", required_approvals=0)


def test_emergency_publish_recorded_with_reason(published, signing_key):
    with pytest.raises(PolicyError):
        published.publish("r2", actor="alice", signer=signing_key, emergency_reason="  ")
    r2 = published.publish("r2", actor="alice", signer=signing_key, emergency_reason="active breach INC-42")
    assert r2.status == "published" and r2.emergency_reason == "active breach INC-42"
    event = _events(published, "policy.emergency_publish")[0]
    assert (event.actor, event.revision, event.reason) == ("alice", "r2", "active breach INC-42")
    assert event.detail["unapproved"] is True
    # Post-hoc review: another officer can still approve it.
    assert published.approve("r2", approver="bob").approvals[0].approver == "bob"


def test_rollback_restores_previous_and_walks_back(published, signing_key, base_files):
    published.approve("r2", approver="bob")
    published.publish("r2", actor="alice", signer=signing_key)
    published.propose(pack_from_files(_variant(base_files, 50)), author="bob", message="tighter")
    published.approve("r3", approver="alice")
    published.publish("r3", actor="bob", signer=signing_key)
    assert published.state().active == "r3"

    back = published.rollback(actor="carol", reason="too many denies")
    assert back.id == "r2" and published.state().active == "r2"
    assert published.get("r3").status == "rolled_back"
    assert verify_bundle(published.active().bundle, [signing_key.public_key()]).revision == "r2"
    event = _events(published, "policy.rollback")[-1]
    assert (event.actor, event.revision, event.reason, event.detail["from"]) == (
        "carol",
        "r2",
        "too many denies",
        "r3",
    )

    assert published.rollback(actor="carol").id == "r1"
    assert published.get("r2").status == "rolled_back"
    with pytest.raises(LifecycleRefused) as err:
        published.rollback(actor="carol")
    assert err.value.reason == "no_previous"
    # Explicit target: a rolled-back revision was enforced before, so it can come back.
    assert published.rollback("r3", actor="carol").id == "r3"


def test_rollback_refuses_never_published_and_nothing_active(published, tmp_path):
    with pytest.raises(LifecycleRefused) as err:
        published.rollback("r2", actor="carol")
    assert err.value.reason == "never_published"
    with RevisionStore.in_home(tmp_path / "empty") as empty:
        with pytest.raises(LifecycleRefused) as err:
            empty.rollback(actor="carol")
        assert err.value.reason == "nothing_active"


def test_shadow_publish_promote_and_clear(published, signing_key):
    r2 = published.publish("r2", actor="alice", signer=signing_key, shadow=True)
    assert r2.status == "shadow"
    state = published.state()
    assert (state.active, state.shadow) == ("r1", "r2")
    shadow = published.shadow()
    with pytest.raises(Exception):  # noqa: B017 - a shadow bundle must never verify as enforceable
        verify_bundle(shadow.bundle, [signing_key.public_key()])
    assert verify_bundle(shadow.bundle, [signing_key.public_key()], scope=SHADOW_SCOPE).revision == "r2"
    with pytest.raises(LifecycleRefused):  # the active bundle export is not the shadow one
        published.bundle("r2")
    with pytest.raises(PolicyError):
        published.publish("r2", actor="alice", signer=signing_key, shadow=True, emergency_reason="x")
    # Promotion needs approval, then clears the shadow slot.
    with pytest.raises(LifecycleRefused):
        published.publish("r2", actor="alice", signer=signing_key)
    published.approve("r2", approver="bob")
    published.publish("r2", actor="alice", signer=signing_key)
    assert (published.state().active, published.state().shadow) == ("r2", None)
    assert published.shadow() is None
    with pytest.raises(LifecycleRefused):
        published.clear_shadow(actor="alice")


def test_shadow_requires_approval_when_configured(tmp_path, base_files, signing_key):
    with RevisionStore.in_home(tmp_path / "h", shadow_requires_approval=True) as s:
        s.propose(pack_from_files(base_files), author="alice", message="m")
        with pytest.raises(LifecycleRefused):
            s.publish("r1", actor="alice", signer=signing_key, shadow=True)


def test_clear_shadow_returns_status(published, signing_key):
    published.publish("r2", actor="alice", signer=signing_key, shadow=True)
    assert published.clear_shadow(actor="alice", reason="done") == "r2"
    assert published.get("r2").status == "proposed"
    assert published.shadow() is None
    assert _events(published, "policy.rollback")[-1].detail == {"mode": "shadow"}


def test_references(published):
    digest = published.get("r2").digest
    assert published.get("2").id == "r2"
    assert published.get(digest[:15]).id == "r2"
    assert published.get(digest[7:19]).id == "r2"
    assert published.get("active").id == "r1"
    assert published.get("latest").id == "r2"
    for bad in ("r99", "shadow", "nonsense", "sha256:ffffffffffff"):
        with pytest.raises(RevisionNotFound):
            published.get(bad)


def test_iter_since_cursor_and_event_shape(published):
    events = list(published.iter_since(None))
    assert [e.cursor for e in events] == sorted(e.cursor for e in events)
    assert all(e.kind == "policy" and e.event_id and e.time.endswith("Z") for e in events)
    tail = list(published.iter_since(events[0].cursor))
    assert tail == events[1:]
    assert list(published.iter_since(events[-1].cursor)) == []
    assert list(published.iter_since(str(events[0].cursor), limit=1)) == events[1:2]


def test_persists_across_reopen(tmp_path, base_files, signing_key):
    home = tmp_path / "home"
    with RevisionStore.in_home(home) as s:
        ensure_initial_revision(s, pack_from_files(base_files), signing_key)
    assert oct(os.stat(home / "policy.db").st_mode & 0o777) == "0o600"
    with RevisionStore.in_home(home) as s:
        assert s.state().active == "r1" and s.active() is not None


def test_clock_is_used_for_timestamps(tmp_path, base_files):
    t0 = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)
    with RevisionStore.in_home(tmp_path / "h", clock=lambda: t0 + timedelta(seconds=1)) as s:
        rev = s.propose(pack_from_files(base_files), author="a", message="m")
        assert rev.created_at == "2026-11-22T01:02:04.000000Z"


def test_default_pack_bootstrap(store, signing_key):
    active = ensure_initial_revision(store, load_pack(), signing_key)
    pack = verify_bundle(active.bundle, [signing_key.public_key()])
    assert pack.digest == load_pack().digest and pack.revision == "r1"


_WORKER = textwrap.dedent(
    """
    import json, sys
    from cryptography.hazmat.primitives import serialization
    from policy import RevisionStore
    key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
    store = RevisionStore.in_home(sys.argv[1])
    print("ready", flush=True)
    while True:  # flip between r2 and r1 as fast as possible until killed
        state = store.state()
        if state.active == "r2":
            store.rollback("r1", actor="worker")
        else:
            store.publish("r2", actor="worker", signer=key) if store.get("r2").status != "rolled_back" \\
                else store.rollback("r2", actor="worker")
    """
)


def test_kill_9_mid_lifecycle_leaves_a_consistent_store(tmp_path, base_files, signing_key):
    home = tmp_path / "home"
    key_file = tmp_path / "k.pem"
    fd = os.open(key_file, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(
        fd,
        signing_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    os.close(fd)
    with RevisionStore.in_home(home) as s:
        ensure_initial_revision(s, pack_from_files(base_files), signing_key)
        s.propose(pack_from_files(_variant(base_files, 55)), author="alice", message="m")
        s.approve("r2", approver="bob")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(home), str(key_file)], stdout=subprocess.PIPE, env=env
        )
        try:
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        with RevisionStore.in_home(home) as s:
            state = s.state()
            active = s.active()
            assert active is not None and active.revision == state.active
            assert s.get(state.active).status == "published"
            others = [r for r in s.history() if r.id != state.active]
            assert all(r.status != "published" for r in others)
            pack = verify_bundle(active.bundle, [signing_key.public_key()])
            assert pack.digest == s.get(state.active).digest
            events = [e.type for e in s.iter_since(None)]
            assert events.count("policy.publish") + events.count("policy.rollback") >= 2


def test_rollback_restores_the_previous_decisions(published, signing_key, base_files):
    """Decisions evaluated from the active bundle after rollback equal those before the change."""
    from policy.engine import new_engine

    inputs = [
        {"action": a, "resource": {"fields": ["name"]}, "signals": {"recent_denies_1h": n}}
        for a in ("read", "search", "export")
        for n in range(7)
    ]

    def decisions() -> list[dict]:
        pack = verify_bundle(published.active().bundle, [signing_key.public_key()])
        engine = new_engine(pack, include_tests=False)
        out = []
        for doc in inputs:
            engine.set_input(doc)
            out.append(engine.eval_rule("data.ztcp.authz.decision"))
        return out

    before = decisions()
    published.approve("r2", approver="bob")
    published.publish("r2", actor="alice", signer=signing_key)
    during = decisions()
    assert during != before  # deny threshold 60 changes some outcomes
    published.rollback(actor="carol")
    assert decisions() == before


def test_rollback_to_a_revision_in_shadow_clears_the_shadow_slot(published, signing_key):
    published.approve("r2", approver="bob")
    published.publish("r2", actor="alice", signer=signing_key)
    published.publish("r1", actor="alice", signer=signing_key, shadow=True)
    assert published.state().shadow == "r1"
    published.rollback("r1", actor="carol")
    state = published.state()
    assert (state.active, state.shadow) == ("r1", None)


def test_tampered_stored_files_are_never_signed(published, signing_key):
    """Approval covers the digest: edit a stored file behind the store's back and publishing fails."""
    import sqlite3

    from policy import StoreIntegrityError

    published.approve("r2", approver="bob")
    db = sqlite3.connect(published.path)
    with db:
        db.execute(
            "UPDATE revision_files SET content = ? WHERE revision = 'r2' AND path = 'ztcp/config/data.json'",
            (b'{"allowed_actions": ["read", "search", "export"], "weights": {}, "thresholds": {}}',),
        )
    db.close()
    with pytest.raises(StoreIntegrityError) as err:
        published.publish("r2", actor="alice", signer=signing_key)
    assert err.value.exit_code == 3
    assert published.state().active == "r1"


def test_events_feed_for_the_siem(published):
    """The shape siem_rules' CallableSource consumes, validated by the SIEM's own event schema."""
    from siem_rules.events import validate

    events, cursor = published.events_after(None, 2)
    assert len(events) == 2 and cursor == 2
    assert "kind" not in events[0]
    for event in events:
        validate("policy", dict(event), "policy.db")
    rest, cursor2 = published.events_after(cursor)
    assert [e["type"] for e in rest] == ["policy.propose"] and cursor2 == 3
    assert published.events_after(cursor2) == ([], 3)
