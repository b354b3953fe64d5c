"""Hot reload: a published revision takes over within 5 s without a failed request; a tampered
bundle is never activated and the last good revision keeps serving."""

from __future__ import annotations

import threading
import time

import pytest

from contracts.decision import DecisionRequest
from policy import load_pack, pack_from_files
from server.runtime import Runtime
from server.settings import load_settings


@pytest.fixture
def runtime():
    rt = Runtime(load_settings(engine_timeout_ms=2000))
    _ = rt.point
    yield rt
    rt.close()


def _request(rt: Runtime) -> DecisionRequest:
    token = rt.issuer.issue_subject("emp-0042", ["case_officer"], method="fido2", mfa=True)
    return DecisionRequest.model_validate({
        "subject_token": token,
        "device": {"id": "dev-1", "managed": True, "compliant": True},
        "context": {"network_zone": "internal"},
        "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": "r-1",
                     "citizen_ref": "cr_SAMPLE" + "A" * 45 + "B", "fields": ["name"]},
        "action": "read",
        "purpose": {"code": "benefit_review", "case_id": "C-2026-0001"},
    })


def _deny_everything_pack():
    """An emergency lockdown revision: same data, one module denying everything."""
    files = {k: v for k, v in load_pack().files.items() if not k.endswith(".rego")}
    files["ztcp/authz.rego"] = (b"package ztcp.authz\n\ndecision := {\"effect\": \"deny\", "
                                b"\"reasons\": [\"lockdown\"], \"risk\": {\"score\": 0}}\n")
    return pack_from_files(files)


def _publish(rt: Runtime, pack) -> str:
    store = rt.revision_store
    rev = store.propose(pack, author="officer-a", message="lockdown")
    store.approve(rev.id, approver="officer-b")
    store.publish(rev.id, actor="officer-b", signer=rt.keys.bundle_signing)
    return rev.id


def test_published_revision_takes_over_without_failed_requests(runtime):
    req = _request(runtime)
    assert runtime.point.active.revision == "r1"
    first = runtime.point.decide(req)
    assert first.effect in ("permit", "step_up")
    runtime.reloader.interval = 0.2
    runtime.reloader.start()
    effects: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                d = runtime.point.decide(req)
                effects.append(d.effect if "engine" not in d.reasons[0] else "failed:" + d.reasons[0])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    workers = [threading.Thread(target=load) for _ in range(3)]
    for w in workers:
        w.start()
    time.sleep(0.3)
    rev = _publish(runtime, _deny_everything_pack())
    published_at = time.monotonic()
    while runtime.point.active.revision != rev and time.monotonic() - published_at < 5:
        time.sleep(0.05)
    switched_after = time.monotonic() - published_at
    time.sleep(0.3)
    stop.set()
    for w in workers:
        w.join()
    assert errors == []
    assert runtime.point.active.revision == rev and switched_after < 5
    assert not [e for e in effects if e.startswith("failed")], set(effects)
    assert runtime.point.decide(req).reasons == ["lockdown"]

    # rollback restores the previous decisions
    runtime.revision_store.rollback(actor="officer-b", reason="test")
    deadline = time.monotonic() + 5
    while runtime.point.active.revision == rev and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.point.active.revision == "r1"
    again = runtime.point.decide(req)
    assert again.reasons != ["lockdown"] and again.policy.revision == "r1"


def test_bundle_signed_by_another_key_is_refused_and_old_revision_keeps_serving(runtime):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    store = runtime.revision_store
    rev = store.propose(_deny_everything_pack(), author="officer-a", message="rogue")
    store.approve(rev.id, approver="officer-b")
    store.publish(rev.id, actor="officer-b", signer=Ed25519PrivateKey.generate())  # not the PDP's key
    assert runtime.reloader.check() is False
    assert runtime.point.active.revision == "r1"
    assert "refused" in runtime.reloader.last_error
    assert runtime.point.decide(_request(runtime)).reasons != ["lockdown"]


def test_tampered_stored_bundle_is_refused(runtime):
    store = runtime.revision_store
    rev = _publish_without_reload(runtime)
    with store._tx() as db:  # a DBA edits the stored bundle bytes
        raw = bytearray(db.execute("SELECT bundle FROM revisions WHERE id = ?", (rev,)).fetchone()[0])
        raw[len(raw) // 2] ^= 0x01
        db.execute("UPDATE revisions SET bundle = ? WHERE id = ?", (bytes(raw), rev))
    assert runtime.reloader.check() is False
    assert runtime.point.active.revision == "r1"


def _publish_without_reload(rt: Runtime) -> str:
    return _publish(rt, _deny_everything_pack())
