"""The demo's nightly government exchange (issue #14), through the real exchange service.

* Three agencies with approved agreements register keys (an Ed25519 signing key for receipts and
  for data they send us, an X25519 key payloads are sealed to). The demo keeps the agencies' side
  — their private keys — in ``ZTCP_HOME/demo-agencies/<agency>/`` so the README can play the
  agency: open a payload, sign a receipt (a real bureau never holds them).
* Two nights before the window ends, at 01:30 Asia/Taipei, an exchange officer sends each of
  them a batch (``agency-tax``, ``agency-ris``, ``agency-nhia``) from this host. The tax office
  and the household registry acknowledge within the hour; the health insurer never does, so when
  the window ends its receipt is overdue: ``exchange.receipt_overdue`` in the ledger, and the SIEM
  rule ``exchange_receipt_overdue`` raises the alert.
* The household registry also sends the bureau address updates for some citizens: recorded as
  ``pii.receive`` (its signature verified), so those citizens' traces show where the copy came from.

The input files name citizens by national ID and are written outside the home, then deleted.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchange.crypto import load_private_jwk, private_jwk, public_jwk

AGENCIES_DIR = "demo-agencies"
OUTBOX = "exchange/outbox"
OPERATOR = "emp-exchange-night"
HOST = "ztcp-exchange-host"
NIGHTLY = {"agency-tax": 300, "agency-ris": 200, "agency-nhia": 150}  # citizens per batch
ACKNOWLEDGING = ("agency-tax", "agency-ris")  # agency-nhia's receipt never comes
EXAMPLE_INPUT = "example-citizens.csv"


@dataclass
class NightReport:
    transfers: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    inbound: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"transfers": self.transfers, "receipts": self.receipts, "overdue": self.overdue,
                "inbound": self.inbound}


def agency_keys(home: Path, agency: str) -> tuple[Any, Any]:
    """The agency's (signing, decryption) private keys, made once and kept in the demo's agency folder."""
    d = home / AGENCIES_DIR / agency
    sig, dec = d / "signing.jwk", d / "decryption.jwk"
    if not sig.exists():
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, key in ((sig, Ed25519PrivateKey.generate()), (dec, X25519PrivateKey.generate())):
            path.write_text(json.dumps(private_jwk(key)))
            path.chmod(0o600)
    return (load_private_jwk(json.loads(sig.read_text()), "Ed25519", str(sig)),
            load_private_jwk(json.loads(dec.read_text()), "X25519", str(dec)))


def register_keys(home: Path, data: dict[str, Any]) -> None:
    """Add each nightly agency's public keys to its approved agreement (the register is then
    published as a signed revision, with the rest of the bureau's registers)."""
    for agency in NIGHTLY:
        sig, dec = agency_keys(home, agency)
        for a in data["agreements"].get(agency, []):
            if a.get("status", "approved") == "approved":
                a["receipt_key"] = public_jwk(sig.public_key())
                a["encryption_key"] = public_jwk(dec.public_key())


def night_of(start: float, end: float, tz: str = "Asia/Taipei") -> float:
    """01:30 local time two nights before the window ends (inside it): a receipt due 24 h later is
    overdue when the window ends."""
    zone = ZoneInfo(tz)
    day = (datetime.fromtimestamp(end, zone) - timedelta(days=2)).date()
    at = datetime(day.year, day.month, day.day, 1, 30, tzinfo=zone).timestamp()
    return max(at, start + 60)


class Night:
    """The nightly exchange as steps of the simulated week (the clock only runs forwards), then the
    sweep when the window has ended."""

    def __init__(self, rt: Any, bureau: Any, clock: Any, start: float, end: float, seed: int) -> None:
        self.rt, self.bureau, self.clock = rt, bureau, clock
        self.at = night_of(start, end, rt.settings.timezone)
        self.end = end
        self.rng = random.Random(seed * 7919 + 14)
        self.report = NightReport()
        self.tmp = Path(tempfile.mkdtemp(prefix="ztcp-demo-exchange-"))  # raw IDs never inside the home
        self._operator: Any = None
        rt.device_inventory.register(HOST, managed=True, compliant=True, actor="demo")

    def steps(self, seq0: int = 2 * 10**9) -> list[Any]:
        from demo.traffic import Step

        return [Step(self.at, seq0, lambda _world: self.send()),
                Step(self.at + 45 * 60, seq0 + 1, lambda _world: self.acknowledge())]

    def operator(self) -> Any:
        from server.exchange import cli_operator

        now = self.clock()
        token = self.rt.issuer.issue_subject(OPERATOR, ["exchange_officer"], method="fido2", mfa=True,
                                             org_unit="exchange-unit", now=now)
        return cli_operator(self.rt, self.rt.verifier.verify_subject(token, now=now), token)

    def send(self) -> None:
        rt, report = self.rt, self.report
        operator = self.operator()
        people = [c.person.national_id for c in self.bureau.citizens]
        agreements = {a.agency: a for a in rt.exchange.all_agreements() if a.problem(rt.exchange.now()) is None}
        stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d")
        for agency, n in NIGHTLY.items():
            agreement = agreements.get(agency)
            if agreement is None:
                continue
            inp = self.tmp / f"{agency}.csv"
            inp.write_text("national_id\n" + "".join(f"{x}\n" for x in self.rng.sample(people, min(n, len(people)))))
            out = rt.home / OUTBOX / f"nightly-{stamp}-{agency}"
            if out.exists():  # a re-seed with --force: a new night is a new directory
                out = out.with_name(out.name + f"-{int(self.clock())}")
            summary = rt.exchange.send(operator, agreement.id, inp, out)
            inp.unlink()
            report.transfers.append({k: summary[k] for k in ("transfer_id", "agency", "agreement_id", "citizens",
                                                             "output_dir", "timestamp")})
            self.clock.advance(120)

    def acknowledge(self) -> None:
        from exchange import receipt_for
        from exchange.service import inbound_statement

        rt, report, home = self.rt, self.report, self.rt.home
        for t in report.transfers:  # two agencies acknowledge what they received; the insurer never does
            if t["agency"] in ACKNOWLEDGING:
                sig, _dec = agency_keys(home, t["agency"])
                receipt = receipt_for(Path(t["output_dir"]), sig, received_at=datetime.fromtimestamp(self.clock(), UTC))
                rt.exchange.record_receipt(receipt)
                report.receipts.append(t["transfer_id"])
        ris = next((a for a in rt.exchange.all_agreements()
                    if a.agency == "agency-ris" and a.problem(rt.exchange.now()) is None), None)
        if ris is None:
            return
        # The household registry sends the bureau address updates it made for some citizens.
        people = [c.person.national_id for c in self.bureau.citizens]
        chosen = self.rng.sample(people, min(40, len(people)))
        payload = self.tmp / "ris-updates.bin"
        payload.write_bytes(b"(the registry's sealed update file; the bureau keeps it, ztcp keeps its digest)\n"
                            + self.rng.randbytes(512))
        citizens = self.tmp / "ris-citizens.csv"
        citizens.write_text("national_id\n" + "".join(f"{x}\n" for x in chosen))
        sig, _ = agency_keys(home, "agency-ris")
        stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d")
        tid = f"xfer_ris{stamp}{self.rng.randrange(10**6):06d}"
        statement = inbound_statement(payload, sig, transfer_id=tid, agreement_id=ris.id, agency="agency-ris",
                                      citizens=len(chosen), sent_at=datetime.fromtimestamp(self.clock(), UTC))
        report.inbound = rt.exchange.receive(self.operator(), ris.id, payload, statement, citizens)

    def finish(self) -> NightReport:
        """After the week: the insurer's receipt is past its deadline (recorded; the SIEM alerts on it).
        Also leaves ``exchange/example-citizens.csv`` — twenty citizens by reference, never by national
        ID — for the README's own transfer."""
        try:
            self.report.overdue = self.rt.exchange.sweep_overdue()
            example = self.rt.home / "exchange" / EXAMPLE_INPUT
            example.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            refs = [c.citizen_ref for c in self.bureau.citizens[:20] if c.citizen_ref]
            example.write_text("citizen_ref\n" + "".join(f"{r}\n" for r in refs))
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.report
