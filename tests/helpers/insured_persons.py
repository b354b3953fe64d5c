"""The insured_persons register that the gateway and console tests read through, with real
components: the bureau's registers with one open case, and a real table encrypted in place by
keymgmt's adapter (as ``ztcp keys encrypt-table`` does).

Load it by path (pytest runs with ``--import-mode=importlib``), as the console tests load
``seed_home.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import contracts
import keymgmt
import policy
from server.runtime import BUREAU_DATA_FILE

ROOT = Path(__file__).resolve().parents[2]
DATASET = "insured_persons"
COLUMNS = ("name", "national_id", "address", "phone", "bank_account")


def national_id(prefix: str) -> str:
    """A valid Taiwanese national ID: ``prefix`` (letter + 8 digits) plus the check digit that fits."""
    return prefix + contracts.national_id_check_digit(prefix)


NID_X = national_id("A12345678")
NID_Y = national_id("F22233344")
PEOPLE = {  # record id -> (national id, name, address, phone, bank account)
    1: (NID_X, "王小明", "臺北市中正區忠孝東路一段1號", "0912345678", "8120000123456789"),
    2: (NID_Y, "陳美玲", "高雄市苓雅區四維三路2號", "0922333444", "7000000987654321"),
}


def write_bureau(home: Path, case_id: str, citizen_ref: str, assignees: list[str], rt: Any = None) -> None:
    """The sample pack's data plus one open benefit-review case about ``citizen_ref`` in the live
    feed; with ``rt``, the registers (the dataset's fields) published as a signed revision too."""
    bureau = json.loads((ROOT / "policy/rego/bureau/data.json").read_text())
    bureau["cases"][case_id] = {"assignees": assignees, "citizen_ref": citizen_ref, "purposes": ["benefit_review"],
                                "status": "open", "sealed": False, "org_unit": "taipei-01"}
    bureau["datasets"][DATASET]["fields"] = list(COLUMNS)
    (home / BUREAU_DATA_FILE).write_text(json.dumps(bureau))
    if rt is not None:
        publish_registers(rt, {"datasets": bureau["datasets"]})


def publish_registers(rt: Any, registers: dict[str, Any]) -> str:
    """Change the bureau's governed registers the only way they change: a revision proposed by one
    security officer, approved by another and published signed; the PDP then follows it."""
    store = rt.revision_store
    base = store.active()
    pack = policy.with_registers(store.pack(base.revision) if base is not None else policy.load_pack(), registers)
    rev = store.propose(pack, author="emp-so-maker", message="registers for the test")
    store.approve(rev.id, approver="emp-so-checker")
    store.publish(rev.id, actor="emp-so-checker", signer=rt.keys.bundle_signing)
    if "point" in rt.__dict__:
        rt.reloader.check()
    return rev.id


def create_encrypted_table(rt: Any, people: dict[int, tuple[str, str, str, str, str]]) -> keymgmt.JobResult:
    """``people`` as a plaintext table in ``rt``'s protected database, then encrypted in place."""
    engine = rt.protected_engine
    md = sa.MetaData()
    t = sa.Table(DATASET, md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("citizen_ref", sa.String(64)), *(sa.Column(c, sa.Text) for c in COLUMNS))
    md.create_all(engine)
    with engine.begin() as c:
        for rid, (nid, name, addr, phone, bank) in people.items():
            c.execute(t.insert().values(id=rid, citizen_ref=contracts.citizen_ref(nid, rt.keys.blind_index),
                                        name=name, national_id=nid, address=addr, phone=phone, bank_account=bank))
    spec = keymgmt.TableSpec(table=DATASET, pk="id", columns=COLUMNS, blind_index=("national_id",),
                             citizen_ref_column="citizen_ref")
    et = keymgmt.EncryptedTable(engine, spec, keymgmt.Envelope(rt.key_provider, engine),
                                keymgmt.BlindIndexKeys(rt.key_provider))
    return keymgmt.encrypt_table(et)
