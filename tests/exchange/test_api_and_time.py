"""The exchange over HTTP (receipts from agencies, batch jobs for systems) and trusted time for the
whole ledger: every checkpoint time-stamped off the append path, `audit verify` checking the tokens,
and the trace bounding each event's time by the stamped checkpoint that covers it."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cli.main import ztcp
from exchange.service import receipt_for
from provenance.timestamp import TimeBounds, TsaVerifier, stored_stamps, verify_stamps
from provenance.trace import trace_citizen
from server.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def _helper(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "helpers" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ew = _helper("exchange_world")
tsa_helper = _helper("tsa")
PROXY = "192.0.2.10"
INTERNAL = {"X-Device-Id": ew.HOST, "X-Network-Zone": "internal", "X-Channel": "exchange"}


@pytest.fixture
def tsa(tmp_path: Path):
    with tsa_helper.TestTsa(tmp_path / "tsa") as t:
        yield t


@pytest.fixture
def world(ztcp_home: Path, tsa):
    w = ew.World(ztcp_home, n=12, tsa_url=tsa.url, tsa_ca_file=str(tsa.ca_file), trusted_proxies=[PROXY])
    yield w
    w.close()


def test_a_batch_job_over_http_then_the_agencys_receipt(world, tmp_path: Path) -> None:
    rt = world.rt
    officer = rt.issuer.issue_subject("emp-xo-1", ["exchange_officer"], method="fido2", mfa=True, org_unit="x")
    with TestClient(create_app(rt), client=(PROXY, 50000)) as client:
        headers = {"Authorization": f"Bearer {officer}", **INTERNAL}
        body = {"agreement_id": "DSA-2026-001", "citizens": [world.people[1][0], world.ref(2), world.people[3][0]]}
        r = client.post("/v1/exchange/batches", json=body, headers=headers)
        assert r.status_code == 202, r.text
        assert world.people[1][0] not in r.text  # national IDs are never echoed
        where = r.headers["location"]
        for _ in range(200):
            status = client.get(where, headers=headers).json()
            if status["state"] not in ("queued", "running"):
                break
            time.sleep(0.05)
        assert status["state"] == "complete", status
        summary = status["summary"]
        assert summary["citizens"] == 3 and summary["timestamp"] == "stamped"
        assert not (Path(summary["output_dir"]).parent / "input.jsonl").exists()  # the IDs are not kept

        # Refusals that need no input are answered at once; another operator cannot see the job.
        refused = client.post("/v1/exchange/batches", json={**body, "agreement_id": "DSA-2026-SUSP"}, headers=headers)
        assert refused.status_code == 403 and refused.json()["reasons"] == ["agreement_suspended"]
        other = rt.issuer.issue_subject("emp-xo-2", ["exchange_officer"], method="fido2", mfa=True, org_unit="x")
        assert client.get(where, headers={"Authorization": f"Bearer {other}"}).status_code == 404

        # The agency's receipt: a caller token with scope exchange:receipt, then the signature decides.
        receipt = receipt_for(Path(summary["output_dir"]), world.tax.signing)
        assert client.post("/v1/exchange/receipts", json={"receipt": receipt}).status_code == 401
        agency = {"Authorization": "Bearer " + rt.issuer.issue_client("agency-tax-gw", ["exchange:receipt"])}
        wrong = receipt_for(Path(summary["output_dir"]), world.labour.signing)
        bad = client.post("/v1/exchange/receipts", json={"receipt": wrong}, headers=agency)
        assert bad.status_code == 422 and bad.json()["reasons"] == ["bad_signature"]
        ok = client.post("/v1/exchange/receipts", json={"receipt": receipt}, headers=agency)
        assert ok.status_code == 200 and ok.json()["status"] == "received", ok.text
        unknown = json.loads(json.dumps({"receipt": receipt.replace(receipt.split(".")[1], "e30")}))
        assert client.post("/v1/exchange/receipts", json=unknown, headers=agency).status_code in (404, 422)
    [ack] = world.events("exchange.receipt")
    assert ack.actor.id == "agency-tax-gw" and ack.actor.type == "agency"


def test_every_checkpoint_is_time_stamped_verified_and_bounds_the_trace(world, tmp_path: Path, tsa,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rt = world.rt
    rt.exchange.send(world.operator(), "DSA-2026-001", world.input_file(tmp_path / "in.csv", [4, 5]), tmp_path / "o")
    rt.ledger.checkpoint()
    assert rt.stamper is not None and rt.stamper.flush(30)
    stamps = stored_stamps(rt.settings.timestamps_dir)
    assert rt.ledger.size in stamps  # the latest checkpoint has its token
    anchor = TsaVerifier.from_pem_file(tsa.ca_file)
    report = verify_stamps(rt.ledger, rt.settings.timestamps_dir, anchor)
    assert report.stamped == len(stamps) and report.untimed_events == 0

    bounds = TimeBounds.load(rt.ledger, rt.settings.timestamps_dir, anchor)
    trace = trace_citizen(rt.ledger, world.ref(4), time_bounds=bounds)
    [disclosure] = trace.events
    size, when = trace.recorded_by(disclosure.seq)
    assert size > disclosure.seq and abs(when.timestamp() - disclosure.event.time.timestamp()) < 60

    # `ztcp audit verify` checks every token; one altered is an integrity failure (exit 3).
    monkeypatch.setenv("ZTCP_TSA_URL", tsa.url)
    monkeypatch.setenv("ZTCP_TSA_CA_FILE", str(tsa.ca_file))
    res = CliRunner().invoke(ztcp, ["audit", "verify", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["timestamps"]["stamped"] == report.stamped
    path = stamps[max(stamps)]
    path.write_bytes(path.read_bytes()[:-8] + b"\x00" * 8)
    res = CliRunner().invoke(ztcp, ["audit", "verify"])
    assert res.exit_code == 3 and "time-stamp of checkpoint" in res.output


def test_a_tsa_outage_leaves_a_gap_that_is_filled_when_it_returns(world, tsa) -> None:
    rt = world.rt
    tsa.down = True
    rt.recorder.record(rt.provenance_event(type="audit.probe", actor={"id": "t", "type": "auditor"}))
    cp = rt.ledger.checkpoint()
    rt.stamper.flush(30)
    assert cp.size not in stored_stamps(rt.settings.timestamps_dir) and rt.stamper.error
    report = verify_stamps(rt.ledger, rt.settings.timestamps_dir, TsaVerifier.from_pem_file(tsa.ca_file))
    assert cp.size in report.unstamped  # the gap, shown
    tsa.down = False
    assert rt.stamper.stamp_missing() >= 1
    assert cp.size in stored_stamps(rt.settings.timestamps_dir)
