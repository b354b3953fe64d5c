"""The directory reader (defensive), the lineage picture (escaped, bounded) and the PDP page guard."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

import contracts
from console.directory import PERSONAS, load_directory
from console.guard import network_zone
from console.i18n import LOCALES, negotiate
from console.lineage import MAX_ROWS, lineage_svg
from provenance.trace import Trace, TracedEvent

LABELS = {k: k for k in ("title", "desc", "citizen", "reads", "disclosures", "recipients", "not_disclosed",
                         "broken", "no_disclosures")} | {"other_reads": "{n} other", "more": "+{n} more"}
REF = "cr_" + "A" * 52


def test_directory_missing_or_broken_gives_personas(tmp_path) -> None:  # noqa: ANN001
    assert load_directory(tmp_path) == (list(PERSONAS), False)
    (tmp_path / "directory.json").write_text("{not json")
    assert load_directory(tmp_path) == (list(PERSONAS), False)
    (tmp_path / "directory.json").write_text(json.dumps({"staff": "nope"}))
    assert load_directory(tmp_path) == (list(PERSONAS), False)


def test_directory_entries_are_read_defensively(tmp_path) -> None:  # noqa: ANN001
    entries = [
        {"id": "emp-1", "name": "王大明", "org_unit": "taipei-01", "roles": ["auditor", "x y"], "auth": "fido2"},
        {"staff_id": "emp-2", "display_name": "", "office": "bad office!", "role": "soc_analyst", "auth_method": "sms"},
        {"id": "emp-3", "roles": ["case_officer"]},  # no console role
        {"id": "bad id with spaces", "roles": ["auditor"]},
        {"id": "emp-4", "roles": "security_officer", "auth_method": {"method": "otp"}},
        "not an object", None, 42,
    ]
    (tmp_path / "directory.json").write_text(json.dumps(entries, ensure_ascii=False))
    staff, from_file = load_directory(tmp_path)
    assert from_file
    by_id = {m.id: m for m in staff}
    assert by_id["emp-1"].roles == ("auditor",) and by_id["emp-1"].office == "taipei-01"
    assert by_id["emp-1"].auth_method == "fido2" and by_id["emp-1"].name == "王大明"
    assert by_id["emp-2"].name == "emp-2" and by_id["emp-2"].office is None
    assert by_id["emp-2"].auth_method == "password"  # unknown method: the weakest, never assumed strong
    assert by_id["emp-4"].roles == ("security_officer",) and by_id["emp-4"].auth_method == "otp"
    assert "emp-3" not in by_id and "bad id with spaces" not in by_id
    assert "dev-custodian" in by_id and "dev-auditor" not in by_id  # personas only for roles nobody holds


def _event(seq: int, **kw) -> TracedEvent:  # noqa: ANN003
    ev = contracts.ProvenanceEvent(citizen_ref=REF, time=datetime(2026, 11, 2, 3, 4, tzinfo=UTC), **kw)
    return TracedEvent(seq, b"", ev, True)


def test_lineage_links_reads_disclosures_recipients_and_escapes() -> None:
    read = _event(0, type="pii.read", actor="emp-<b>", dataset="d", fields=["name"], purpose="benefit_review")
    other = _event(1, type="pii.read", actor="emp-9", dataset="d", fields=["name"], purpose="benefit_review")
    disc = _event(2, type="pii.disclose", actor="emp-1", dataset="d", fields=["name"], derived_from=[
        read.event.event_id, "01890000-0000-7000-8000-000000000000"],
        recipient={"type": "agency", "id": "agency-tax", "name": "Tax & <Revenue>"},
        purpose={"code": "benefit_review", "legal_basis": "TCA-Art-30"})
    svg = lineage_svg(Trace(REF, None, None, None, [read, other, disc]), LABELS)
    root = ET.fromstring(svg)  # noqa: S314 - our own output: must be well-formed
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "Tax & <Revenue>" in texts and "<b>" not in svg.replace("&lt;b&gt;", "")
    assert "broken" in texts  # the source read that is not in the ledger is shown as missing
    assert "1 other" in texts  # the read nobody disclosed is summarised
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) >= 5


def test_lineage_is_bounded_for_huge_histories() -> None:
    reads = [_event(i, type="pii.read", actor=f"emp-{i}", dataset="d", fields=["name"], purpose="x")
             for i in range(300)]
    discs = [_event(1000 + i, type="pii.disclose", actor="emp-1", dataset="d", fields=["name"],
                    derived_from=[reads[i].event.event_id], recipient={"type": "agency", "id": f"ag-{i}"},
                    purpose={"code": "x", "legal_basis": "L"}) for i in range(100)]
    svg = lineage_svg(Trace(REF, None, None, None, reads + discs), LABELS)
    root = ET.fromstring(svg)  # noqa: S314
    nodes = root.findall(".//{http://www.w3.org/2000/svg}rect")
    assert len(nodes) <= 1 + MAX_ROWS * 3 + 1 and "+120 more" in svg


def test_network_zone() -> None:
    assert network_zone("127.0.0.1") == "internal" and network_zone("10.2.3.4") == "internal"
    assert network_zone("::1") == "internal" and network_zone("8.8.8.8") == "internet"
    assert network_zone("testclient") == "internet" and network_zone(None) == "internet"


def test_lineage_without_disclosures_says_so() -> None:
    read = _event(0, type="pii.read", actor="emp-1", dataset="d", fields=["name"], purpose="x")
    update = _event(1, type="pii.update", actor="emp-1", dataset="d", fields=["bank_account"], purpose="x")
    svg = lineage_svg(Trace(REF, None, None, None, [read, update]), LABELS)
    texts = [t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]  # noqa: S314
    assert "no_disclosures" in texts and "2 other" in texts

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=6),
                     max_leaves=30)


@given(st.text(max_size=300), st.none() | st.text(max_size=12))
def test_negotiate_never_fails(header, cookie) -> None:  # noqa: ANN001
    assert negotiate(header, cookie) in LOCALES


@settings(max_examples=60, deadline=None)
@given(st.lists(_json, max_size=8) | st.dictionaries(st.sampled_from(["staff", "people", "x"]), st.lists(_json)))
def test_directory_reader_never_fails_on_any_json(tmp_path_factory, doc) -> None:  # noqa: ANN001
    home = tmp_path_factory.mktemp("dir")
    (home / "directory.json").write_text(json.dumps(doc))
    staff, _ = load_directory(home)
    assert staff and all(m.console_roles for m in staff)
