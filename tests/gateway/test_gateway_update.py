"""PATCH /v1/records/{dataset}/{record_id} (pii.update) and the runtime clock, end to end over HTTP
with real components: sealed keyring, encrypted SQLite table, default Rego pack, provenance ledger."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contracts
import keymgmt
from demo.clock import SimClock
from pdp.decision_log import DecisionLog
from server.app import create_app
from server.runtime import BUREAU_DATA_FILE, Runtime
from server.settings import load_settings

DATASET = "insured_persons"
NID = "A123456789"
OLD_BANK, NEW_BANK = "812-000012345678", "700-999988887777"
ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("insured_persons", ROOT / "tests" / "helpers" / "insured_persons.py")
insured = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(insured)
T0 = datetime(2026, 3, 4, 2, 0, tzinfo=UTC).timestamp()  # Wednesday 10:00 in Taipei, long before "now"
CHANGE = {"values": {"bank_account": NEW_BANK}, "purpose": {"code": "bank_account_change", "case_id": "C-1"}}
PROXY = "192.0.2.10"  # the bureau's trusted proxy: it passes on the device id and the context
HEADERS = {"X-Device-Id": "dev-1", "X-Network-Zone": "internal", "X-Channel": "counter", "X-Geo": "25.04,121.56"}


class World:
    def __init__(self, rt: Runtime, client: TestClient, clock: SimClock, ref: str) -> None:
        self.rt, self.client, self.clock, self.ref = rt, client, clock, ref

    def auth(self, sub: str, role: str) -> dict[str, str]:
        tok = self.rt.issuer.issue_subject(sub, [role], method="fido2", mfa=True, org_unit="taipei-01",
                                           now=self.clock())
        return {"Authorization": f"Bearer {tok}", **HEADERS}

    def patch(self, headers: dict, body: dict, record: str = "1"):
        return self.client.patch(f"/v1/records/{DATASET}/{record}", json=body, headers=headers)

    def events(self, type_: str) -> list[contracts.ProvenanceEvent]:
        return [e.event for e in self.rt.ledger.entries() if e.event.type == type_]

    def stored(self) -> str:
        with sqlite3.connect(self.rt.settings.protected_db_url.removeprefix("sqlite:///")) as db:
            return db.execute("SELECT bank_account FROM insured_persons WHERE id = 1").fetchone()[0]


@pytest.fixture
def world(ztcp_home: Path):
    clock = SimClock(T0)
    rt = Runtime(load_settings(engine_timeout_ms=2000, trusted_proxies=[PROXY]), clock=clock)
    rt.keys.ensure_all()
    rt.device_inventory.register("dev-1", managed=True, compliant=True, actor="test")
    ref = contracts.citizen_ref(NID, rt.keys.blind_index)
    bureau = json.loads((ROOT / "policy/rego/bureau/data.json").read_text())
    bureau["cases"]["C-1"] = {"assignees": ["emp-counter"], "citizen_ref": ref, "status": "open",
                              "purposes": ["bank_account_change"], "org_unit": "taipei-01"}
    bureau["datasets"][DATASET]["fields"] = ["name", "national_id", "bank_account"]
    (ztcp_home / BUREAU_DATA_FILE).write_text(json.dumps(bureau))
    insured.publish_registers(rt, {"datasets": bureau["datasets"]})
    engine = rt.protected_engine
    md = sa.MetaData()
    sa.Table(DATASET, md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("citizen_ref", sa.String(80)),
             sa.Column("name", sa.Text), sa.Column("national_id", sa.Text), sa.Column("bank_account", sa.Text))
    md.create_all(engine)
    spec = keymgmt.TableSpec(table=DATASET, pk="id", columns=("name", "national_id", "bank_account"),
                             blind_index=("national_id",), citizen_ref_column="citizen_ref")
    et = keymgmt.EncryptedTable(engine, spec, keymgmt.Envelope(rt.key_provider, engine),
                                keymgmt.BlindIndexKeys(rt.key_provider))
    et.prepare()
    et.insert_many([{"id": 1, "citizen_ref": ref, "name": "王小明", "national_id": NID, "bank_account": OLD_BANK}])
    with TestClient(create_app(rt), client=(PROXY, 50000)) as client:
        yield World(rt, client, clock, ref)
    rt.close()


def _read_bank(world: World) -> str:
    table = world.rt.protected_reader(DATASET).table
    return table._decrypt_row(table.fetch_row(1), ["bank_account"])["bank_account"]


def test_update_is_decided_recorded_then_written_encrypted(world: World) -> None:
    before = world.stored()
    r = world.patch(world.auth("emp-counter", "counter_staff"),
                    CHANGE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["updated_fields"] == ["bank_account"] and NEW_BANK not in r.text and OLD_BANK not in r.text
    assert r.headers["cache-control"] == "no-store"
    stored = world.stored()
    assert stored.startswith("ze1:") and stored != before and NEW_BANK not in stored
    assert _read_bank(world) == NEW_BANK
    [ev] = world.events("pii.update")
    assert ev.event_id == body["provenance"]["event_id"] and ev.decision_id == body["decision_id"]
    assert ev.fields == ["bank_account"] and ev.citizen_ref == world.ref and ev.record_id == "1"
    assert ev.purpose.code == "bank_account_change" and ev.purpose.case_id == "C-1"
    assert ev.actor.id == "emp-counter" and ev.via.system == "ztcp-gateway"
    assert ev.time.timestamp() == T0  # the runtime's clock, not the wall clock
    # The new payout account is named by its keyed reference (same digits, same ref), never its number.
    assert ev.bank_account_ref == contracts.bank_account_ref(NEW_BANK.replace("-", ""), world.rt.keys.blind_index)
    raw = world.rt.ledger.get(body["provenance"]["seq"]).body
    assert NEW_BANK.encode() not in raw and NEW_BANK.replace("-", "").encode() not in raw


def test_an_account_that_is_not_digits_is_a_422_and_nothing_changes(world: World) -> None:
    before = world.stored()
    r = world.patch(world.auth("emp-counter", "counter_staff"),
                    {**CHANGE, "values": {"bank_account": "transfer to my cousin"}})
    assert r.status_code == 422, r.text
    assert "values.bank_account" in r.text and "cousin" not in r.text
    assert world.stored() == before and world.events("pii.update") == []


def test_update_without_need_to_know_is_refused_and_nothing_changes(world: World) -> None:
    before = world.stored()
    r = world.patch(world.auth("emp-stranger", "counter_staff"),
                    CHANGE)
    assert r.status_code == 403, r.text
    assert "not_assigned" in r.json()["reasons"]
    assert world.stored() == before and _read_bank(world) == OLD_BANK
    assert world.events("pii.update") == []
    assert [e.actor.id for e in world.events("pii.denied")] == ["emp-stranger"]


def test_update_the_role_may_not_make_is_refused(world: World) -> None:
    r = world.patch(world.auth("emp-counter", "reviewer"),  # reviewers read; they do not change records
                    CHANGE)
    assert r.status_code == 403, r.text
    assert _read_bank(world) == OLD_BANK and world.events("pii.update") == []


def test_update_the_ledger_cannot_record_is_not_made(world: World) -> None:
    before = world.stored()
    world.rt.ledger.close()
    r = world.patch(world.auth("emp-counter", "counter_staff"),
                    CHANGE)
    assert r.status_code == 503, r.text
    assert world.stored() == before


@pytest.mark.parametrize(("body", "field"), [
    ({"values": {"shoe_size": "42"}, "purpose": {"code": "bank_account_change", "case_id": "C-1"}}, "values"),
    ({"values": {"citizen_ref": "cr_X"}, "purpose": {"code": "bank_account_change", "case_id": "C-1"}}, "values"),
    ({"values": {"ztcp_dek": "x"}, "purpose": {"code": "bank_account_change", "case_id": "C-1"}}, "values"),
    ({"values": {}, "purpose": {"code": "bank_account_change"}}, "values"),
    ({"values": {"bank_account": "1"}}, "purpose"),
    ({"values": {"bank_account": "1"}, "purpose": {"code": "x"}, "extra": 1}, "extra"),
])
def test_bad_update_input_is_a_422_naming_the_field(world: World, body: dict, field: str) -> None:
    before = world.stored()
    r = world.patch(world.auth("emp-counter", "counter_staff"), body)
    assert r.status_code == 422, r.text
    assert field in r.text
    assert world.stored() == before and world.events("pii.update") == []


def test_simulated_clock_reaches_decisions_tokens_provenance_and_key_audit(world: World) -> None:
    world.clock.set(T0 + 3600)
    headers = world.auth("emp-counter", "counter_staff")  # a token issued "then": expired by the wall clock
    r = world.client.get(f"/v1/records/{DATASET}/1", params={"fields": "name", "purpose": "bank_account_change",
                                                           "case_id": "C-1"}, headers=headers)
    assert r.status_code == 200, r.text
    [read] = world.events("pii.read")
    assert read.time.timestamp() == T0 + 3600
    world.rt.decision_log.flush()
    entry = DecisionLog.reader(world.rt.home / "decisions.db").get(r.json()["decision_id"])
    assert entry["ts"] == T0 + 3600 and entry["timestamp"].startswith("2026-03-04T03:00:00")
    # A refused decrypt is stamped by the clock too (key audit → SIEM).
    reader = world.rt.protected_reader(DATASET)
    with pytest.raises(keymgmt.DecryptRefused):
        reader.read("not-a-token", 1, ["name"])
    audit = world.rt.key_audit
    [(_, refused)] = [(s, e) for s, e in audit.iter_since(0) if e.type == "key.decrypt_refused"]
    assert refused.time.timestamp() == T0 + 3600


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=12), inner, max_size=3),
                     max_leaves=8)
_bodies = st.one_of(
    _json,
    st.fixed_dictionaries({"values": st.dictionaries(st.sampled_from(["bank_account", "name", "x", "id", ""]),
                                                     st.none() | st.text(max_size=30), max_size=3),
                           "purpose": st.fixed_dictionaries({"code": st.sampled_from(["bank_account_change", "",
                                                                                      "x y"])},
                                                            optional={"case_id": st.sampled_from(["C-1", "C-9"])})}),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_arbitrary_update_bodies_never_500_and_never_change_without_a_record(world: World, body: object) -> None:
    before, updates = world.stored(), len(world.events("pii.update"))
    r = world.patch(world.auth("emp-counter", "counter_staff"), body)  # type: ignore[arg-type]
    assert r.status_code in (200, 403, 422), r.text
    if r.status_code == 200:
        assert len(world.events("pii.update")) == updates + 1
    else:
        assert world.stored() == before and len(world.events("pii.update")) == updates
