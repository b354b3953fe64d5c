"""A bureau that exchanges data, with real components: the sealed keyring, an encrypted
insured_persons table (keymgmt's adapter), the default pack with an agreements register published
as a signed revision (two officers), the real ledger and PDP, and agencies with their own keys.

Load it by path (pytest runs with ``--import-mode=importlib``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import contracts
from exchange.crypto import public_jwk
from server.exchange import cli_operator
from server.runtime import Runtime
from server.settings import load_settings
from siem_rules.fixtures import synthetic_national_id

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("insured_persons", ROOT / "tests" / "helpers" / "insured_persons.py")
insured = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(insured)

DATASET = insured.DATASET
HOST = "ztcp-exchange-host"


class Agency:
    def __init__(self, agency_id: str) -> None:
        self.id = agency_id
        self.signing = Ed25519PrivateKey.generate()
        self.decryption = X25519PrivateKey.generate()

    def keys(self) -> dict[str, Any]:
        return {"receipt_key": public_jwk(self.signing.public_key()),
                "encryption_key": public_jwk(self.decryption.public_key())}


def people(n: int, offset: int = 0) -> dict[int, tuple[str, str, str, str, str]]:
    """``n`` synthetic insured people: record id -> (national id, name, address, phone, bank account)."""
    return {i + 1: (synthetic_national_id(1_000_003 * (i + offset) % 500_000_000), f"姓名{i}", f"臺北市{i}號",
                    f"09{(i * 7919) % 10**8:08d}", f"81200{i:011d}") for i in range(n)}


def agreements(tax: Agency, labour: Agency, **overrides: Any) -> dict[str, list[dict]]:
    dsa = {"id": "DSA-2026-001", "dataset": DATASET, "fields": ["name", "address", "national_id"],
           "legal_basis": "TCA-Art-30", "expires": "2099-12-31T00:00:00Z", "status": "approved", **tax.keys()}
    dsa.update(overrides)
    return {
        tax.id: [dsa, {"id": "DSA-2026-SUSP", "dataset": DATASET, "fields": ["name"], "legal_basis": "TCA-Art-30",
                       "expires": "2099-12-31T00:00:00Z", "status": "suspended", **tax.keys()},
                 {"id": "DSA-2020-OLD", "dataset": DATASET, "fields": ["name"], "legal_basis": "TCA-Art-30",
                  "expires": "2021-01-01T00:00:00Z", "status": "approved", **tax.keys()}],
        labour.id: [{"id": "DSA-LAB-1", "dataset": DATASET, "fields": ["name", "phone"], "legal_basis": "LSA-Art-7",
                     "expires": "2099-12-31T00:00:00Z", "status": "approved", **labour.keys()}],
    }


class World:
    def __init__(self, home: Path, n: int = 20, **settings: Any) -> None:
        self.home = home
        self.rt = Runtime(load_settings(engine_timeout_ms=2000, **settings))
        rt = self.rt
        rt.keys.ensure_all()
        rt.device_inventory.register(HOST, managed=True, compliant=True, actor="test")
        self.people = people(n)
        self.tax, self.labour = Agency("agency-tax"), Agency("agency-labour")
        bureau = json.loads((ROOT / "policy/rego/bureau/data.json").read_text())
        bureau["datasets"][DATASET]["fields"] = list(insured.COLUMNS)
        (home / "bureau-data.json").write_text(json.dumps(bureau))
        self.publish(agreements(self.tax, self.labour), bureau["datasets"])
        insured.create_encrypted_table(rt, self.people)

    def publish(self, agreements: dict, datasets: dict | None = None) -> str:
        regs: dict[str, Any] = {"agreements": agreements}
        if datasets is not None:
            regs["datasets"] = datasets
        return insured.publish_registers(self.rt, regs)

    def ref(self, record_id: int) -> str:
        return contracts.citizen_ref(self.people[record_id][0], self.rt.keys.blind_index)

    def operator(self, role: str = "exchange_officer", sub: str = "emp-xo-1") -> Any:
        tok = self.rt.issuer.issue_subject(sub, [role], method="fido2", mfa=True, org_unit="exchange-unit")
        subject = self.rt.verifier.verify_subject(tok)
        return cli_operator(self.rt, subject, tok)

    def input_file(self, path: Path, record_ids: list[int], *, fmt: str = "csv", by: str = "national_id") -> Path:
        ids = [self.people[i][0] if by == "national_id" else self.ref(i) for i in record_ids]
        if fmt == "csv":
            path.write_text(f"{by}\n" + "".join(f"{v}\n" for v in ids))
        else:
            path.write_text("".join(json.dumps({by: v}) + "\n" for v in ids))
        return path

    def events(self, type_: str | None = None) -> list:
        self.rt.ledger.refresh()
        out = [e.event for e in self.rt.ledger.entries()]
        return [e for e in out if type_ is None or e.type == type_]

    def close(self) -> None:
        self.rt.close()
