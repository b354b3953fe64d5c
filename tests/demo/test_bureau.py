"""The synthetic bureau: its shape, determinism, schema-valid bureau data, a clean staff directory."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, date, datetime

import pytest

from demo import bureau as b
from demo.errors import DemoError
from demo.incidents import Incidents
from demo.seed import validate_bureau_data
from policy import DEFAULT_PACK_DIR

TODAY = date(2026, 11, 22)
KEY = b"\x01" * 32
NID = re.compile(r"[A-Z][12][0-9]{8}")


@pytest.fixture(scope="module")
def bureau() -> b.Bureau:
    bur = b.build_bureau(5, 600, TODAY)
    Incidents(bur, datetime(2026, 11, 20, tzinfo=UTC).timestamp(), 5).plan()
    b.assign_refs(bur, KEY)
    return bur


def _sample() -> dict:
    return json.loads((DEFAULT_PACK_DIR / "bureau" / "data.json").read_text())


def test_staff_offices_and_roles(bureau: b.Bureau) -> None:
    assert len(bureau.offices) == 24 and len({o.id for o in bureau.offices}) == 24
    assert len(bureau.staff) == 500 and len({s.id for s in bureau.staff}) == 500
    roles = Counter(s.role for s in bureau.staff)
    assert set(roles) == {"counter_staff", "case_officer", "reviewer", "supervisor", "auditor", "call_center",
                          "it_admin", "key_custodian", "security_officer", "soc_analyst"}
    assert {s.office for s in bureau.staff if s.role == "supervisor"} == {o.id for o in bureau.offices}
    assert all(s.device_id and s.managed for s in bureau.staff)
    assert any(not s.compliant for s in bureau.staff)  # a few laptops out of compliance


def test_claims_cases_consents_and_well_known_people(bureau: b.Bureau) -> None:
    assert set(Counter(c.kind for c in bureau.claims)) == set(b.CLAIM_KINDS)
    staff = {s.id for s in bureau.staff}
    for case in bureau.cases.values():
        assert case.assignees and set(case.assignees) <= staff
    assert {c.kind for c in bureau.cases.values()} >= {"benefit", "counter", "vip", "fraud"}
    assert len(bureau.well_known()) == 3
    vip_cases = [c for c in bureau.cases.values() if c.kind == "vip"]
    assert vip_cases and all(c.assignees == [bureau.custodians[0]] for c in vip_cases)
    assert bureau.consents and all(c["party"] in b.MYDATA_PARTIES for c in bureau.consents.values())
    maternity = {cl.citizen for cl in bureau.claims if cl.kind == "maternity"}
    assert all(bureau.citizens[i - 1].person.sex == "F" for i in maternity)


def test_same_seed_same_bureau_other_seed_other_bureau() -> None:
    one, two, other = (b.build_bureau(s, 200, TODAY) for s in (9, 9, 10))
    assert [c.person for c in one.citizens] == [c.person for c in two.citizens]
    assert one.cases == two.cases and one.staff == two.staff and one.claims == two.claims
    assert [c.person for c in one.citizens] != [c.person for c in other.citizens]


def test_bureau_data_is_schema_valid_and_names_citizens_only_by_reference(bureau: b.Bureau) -> None:
    data = b.bureau_data(bureau, _sample())
    validate_bureau_data(data)
    text = json.dumps(data, ensure_ascii=False)
    assert not NID.search(text)
    assert not any(c.person.name in text for c in bureau.citizens)
    assert set(data["protected_citizens"]) == {c.citizen_ref for c in bureau.well_known()}
    assert data["datasets"]["injury_claims"]["classification"] == "special"
    assert "decision_log" in data["datasets"]  # the sample pack's internal datasets are kept
    assert data["agreements"]["agency-legacy"][0]["status"] == "suspended"


def test_broken_bureau_data_is_refused(bureau: b.Bureau) -> None:
    data = b.bureau_data(bureau, _sample())
    case = next(iter(data["cases"].values()))
    case["citizen_ref"] = "A123456789"  # a raw ID where a reference belongs
    with pytest.raises(DemoError, match="bureau.schema.json"):
        validate_bureau_data(data)


def test_directory_has_staff_only(bureau: b.Bureau) -> None:
    doc = b.directory(bureau, datetime(2026, 11, 22, tzinfo=UTC))
    assert doc["version"] == 1 and len(doc["staff"]) == 500 and len(doc["offices"]) == 24
    entry = doc["staff"][0]
    assert set(entry) == {"id", "display_name", "office", "roles", "auth_method", "mfa", "device"}
    text = json.dumps(doc, ensure_ascii=False)
    assert not NID.search(text)
    names = {c.person.name for c in bureau.citizens}
    assert not any(s["display_name"] in names for s in doc["staff"])
    assert not any(c.citizen_ref in text for c in bureau.citizens)


def test_too_few_citizens_is_refused() -> None:
    with pytest.raises(ValueError):
        b.build_bureau(1, 10, TODAY)


def test_rows_carry_every_registered_field(bureau: b.Bureau) -> None:
    rows = b.table_rows(bureau)
    for name, spec in b.TABLES.items():
        assert rows[name], name
        assert set(rows[name][0]) == {"id", "citizen_ref", *spec["protected"], *spec["plain"]}
    assert len(rows["insured_persons"]) == len(bureau.citizens)
    assert len(rows["injury_claims"]) == sum(1 for c in bureau.claims if c.injury_id)
