"""The agreements register, as the signed policy revision carries it (``bureau/data.json``, governed:
changed only by a revision two security officers approve): which agency may receive which fields of
which dataset, on which legal basis, until when, and the agency's keys — its Ed25519 signing key
(``receipt_key``: verifies its receipts and the data it sends us) and its X25519 key
(``encryption_key``: payloads are sealed to it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchange.crypto import load_public_jwk, thumbprint
from exchange.errors import ExchangeInputError, ExchangeRefused

DEFAULT_PURPOSE = "agency_exchange"


@dataclass(frozen=True)
class Agreement:
    id: str
    agency: str
    dataset: str
    fields: tuple[str, ...]
    legal_basis: str
    expires: datetime
    status: str
    purpose: str
    receipt_jwk: dict | None
    encryption_jwk: dict | None
    receipt_hours: float | None

    def problem(self, now: datetime) -> str | None:
        """Why the agreement cannot be used now (the PDP decides too; this names it early)."""
        if self.status != "approved":
            return "agreement_suspended" if self.status == "suspended" else f"agreement_{self.status}"
        if self.expires <= now:
            return "agreement_expired"
        return None

    def state(self, now: datetime) -> str:
        p = self.problem(now)
        return "in force" if p is None else p.removeprefix("agreement_")

    def receipt_key(self) -> Any:
        if self.receipt_jwk is None:
            raise ExchangeRefused(f"agreement {self.id} registers no receipt_key for {self.agency}",
                                  ["agreement_without_keys"])
        return load_public_jwk(self.receipt_jwk, "Ed25519", f"agreement {self.id} receipt_key")

    def encryption_key(self) -> Any:
        if self.encryption_jwk is None:
            raise ExchangeRefused(f"agreement {self.id} registers no encryption_key for {self.agency}",
                                  ["agreement_without_keys"])
        return load_public_jwk(self.encryption_jwk, "X25519", f"agreement {self.id} encryption_key")

    def receipt_thumbprint(self) -> str:
        return thumbprint(self.receipt_key())


def _time(value: Any) -> datetime:
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)  # unreadable: treated as expired (fail closed)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def agreements(register: dict | None) -> list[Agreement]:
    """Every agreement of the ``agreements`` register (agency id → list of agreements)."""
    out = []
    for agency, items in sorted((register or {}).items()):
        for a in items if isinstance(items, list) else []:
            if not isinstance(a, dict) or "id" not in a:
                continue
            out.append(Agreement(
                id=str(a["id"]), agency=str(agency), dataset=str(a.get("dataset", "")),
                fields=tuple(a.get("fields") or ()), legal_basis=str(a.get("legal_basis", "")),
                expires=_time(a.get("expires")), status=str(a.get("status", "approved")),
                purpose=str(a.get("purpose") or DEFAULT_PURPOSE), receipt_jwk=a.get("receipt_key"),
                encryption_jwk=a.get("encryption_key"),
                receipt_hours=float(a["receipt_hours"]) if a.get("receipt_hours") else None))
    return out


def find(register: dict | None, agreement_id: str) -> Agreement:
    """The agreement ``agreement_id``; an unknown one is refused (exit 2), never guessed."""
    if not agreement_id or len(agreement_id) > 128:
        raise ExchangeInputError("--agreement: an agreement id is required")
    for a in agreements(register):
        if a.id == agreement_id:
            return a
    raise ExchangeRefused(f"unknown agreement {agreement_id!r}: not in the signed agreements register",
                          ["unknown_agreement"])
