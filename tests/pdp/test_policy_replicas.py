"""Policy revisions across replicas: with ZTCP_DATABASE_URL the revision store is in PostgreSQL, and
a revision published through any replica is active on every replica within 5 s (each one's
reloader polls ``state()`` every second, then verifies and compiles the signed bundle).

The lifecycle itself is tested at length on SQLite in tests/policy/test_revisions.py; here the same
rules run on both drivers, through two handles on one store (two replicas).
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policy import LifecycleRefused, RevisionStore, ensure_initial_revision, load_pack, pack_from_files, verify_bundle

_spec = importlib.util.spec_from_file_location("replicas", Path(__file__).parents[1] / "helpers" / "replicas.py")
_helpers = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_helpers)  # type: ignore[union-attr]
Clock, replicas, wait_until = _helpers.Clock, _helpers.replicas, _helpers.wait_until

T0 = 1795399200.0


def variant(pack, weight: int):  # noqa: ANN001, ANN201
    """The pack with another weight for a new device (a real, valid policy change)."""
    files = dict(pack.files)
    config = json.loads(files["ztcp/config/data.json"])
    config["risk"]["weights"]["new_device"] = weight
    files["ztcp/config/data.json"] = (json.dumps(config, indent=2) + "\n").encode()
    return pack_from_files(files)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):  # noqa: ANN001, ANN201
    """Where the store lives: a file every handle opens, or one PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "policy.db")
    return request.getfixturevalue("pg_url")


def test_the_lifecycle_on_both_drivers_seen_from_two_handles(location):
    key = Ed25519PrivateKey.generate()
    base = load_pack()
    results: list[str] = []

    def first_start() -> None:
        with RevisionStore(location) as s:
            results.append(ensure_initial_revision(s, base, key).revision)

    threads = [threading.Thread(target=first_start) for _ in range(4)]  # replicas starting together
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["r1"] * 4

    a, b = RevisionStore(location), RevisionStore(location)
    try:
        assert [r.id for r in b.history()] == ["r1"]
        before = b.state()
        r2 = a.propose(variant(base, 60), author="alice", message="tighten deny")
        assert (r2.id, r2.parent, r2.status) == ("r2", "r1", "proposed")
        assert b.files("r2") == dict(variant(base, 60).files)
        with pytest.raises(LifecycleRefused, match="cannot approve"):
            b.approve("r2", approver="alice")
        with pytest.raises(LifecycleRefused, match="approval"):
            b.publish("r2", actor="alice", signer=key)
        b.approve("r2", approver="bob")
        a.publish("r2", actor="alice", signer=key)
        after = b.state()
        assert (after.active, after.active_digest) == ("r2", r2.digest) and after.generation > before.generation
        assert verify_bundle(b.active().bundle, [key.public_key()]).data["ztcp"]["config"]["risk"]["weights"][
            "new_device"] == 60
        assert b.get(r2.digest[7:19]).id == "r2"  # a digest prefix

        r3 = b.propose(variant(base, 70), author="carol", message="shadow a looser deny")
        b.publish("r3", actor="carol", signer=key, shadow=True)  # report-only: no approval needed
        assert a.state().shadow == "r3" and a.shadow().revision == "r3"
        assert a.clear_shadow(actor="carol") == "r3" and b.state().shadow is None
        rolled = a.rollback(actor="dave", reason="r2 denies too much")
        assert rolled.id == "r1" and b.state().active == "r1" and b.get("r2").status == "rolled_back"

        events = list(b.iter_since(None))
        assert [e.type for e in events] == ["policy.propose", "policy.publish", "policy.propose", "policy.refused",
                                            "policy.refused", "policy.approve", "policy.publish", "policy.propose",
                                            "policy.publish", "policy.rollback", "policy.rollback"]
        feed, cursor = a.events_after(events[5].cursor)
        assert [e["type"] for e in feed] == [e.type for e in events[6:]] and cursor == events[-1].cursor
        assert [r.id for r in a.history(2)] == [r3.id, "r2"]
    finally:
        a.close()
        b.close()


def test_a_revision_published_through_one_replica_is_active_on_all_within_5_s(tmp_path, pg_url):
    clock = Clock(time.time())
    rts = replicas(tmp_path, clock, pg_url, n=3)
    try:
        assert {rt.point.active.revision for rt in rts} == {"r1"}  # one bootstrap for all three
        for rt in rts:
            rt.reloader.start()
        a, c = rts[0], rts[2]
        a.revision_store.propose(variant(a.pack(), 60), author="alice", message="tighten deny")
        c.revision_store.approve("r2", approver="bob")
        published = time.monotonic()
        a.revision_store.publish("r2", actor="alice", signer=a.keys.bundle_signing)
        took: dict[int, float] = {}
        while len(took) < len(rts) and time.monotonic() - published < 10:
            for k, rt in enumerate(rts):
                if k not in took and rt.point.active.revision == "r2":
                    took[k] = time.monotonic() - published
            time.sleep(0.005)
        shown = ", ".join(f"{took[k] * 1000:.0f} ms" for k in sorted(took))
        print(f"\npublished on A -> active on A, B, C after {shown}")
        assert len(took) == len(rts) and max(took.values()) < 5.0

        c.revision_store.rollback(actor="carol", reason="back")  # through another replica
        for rt in rts:
            wait_until(lambda rt=rt: rt.point.active.revision == "r1", 5.0)
        assert all(rt.reloader.last_error is None for rt in rts)
    finally:
        for rt in rts:
            rt.close()
