"""The citizen's own view ("who looked at my data, and why"), in the spirit of Estonia's Data Tracker.

It shows who by agency and unit — the staff member only where the agency's policy allows it — when,
which fields, for what purpose and legal basis, and where data was disclosed. Events of an
investigation that is still sealed are withheld until the case is closed (``sealed_cases`` returns
the case ids that are sealed *now*), and so are refused attempts and auditors' own queries.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from contracts.provenance_event import Actor, ProvenanceEvent
from provenance.ledger import Ledger

CITIZEN_VISIBLE = frozenset({"pii.read", "pii.search", "pii.export", "pii.disclose", "pii.update"})

SealedCases = Callable[[], Collection[str]]
StaffVisible = Callable[[Actor], bool]


class CitizenAccess(BaseModel):
    model_config = ConfigDict(frozen=True)

    time: datetime
    type: str
    agency: str | None
    unit: str | None
    staff: str | None
    system: str | None
    dataset: str | None
    fields: list[str]
    purpose: str | None
    legal_basis: str | None
    consent_id: str | None
    recipient: str | None


def _hide_staff(_actor: Actor) -> bool:
    return False


def to_citizen_view(e: ProvenanceEvent, show_staff: StaffVisible) -> CitizenAccess:
    p, r = e.purpose, e.recipient
    return CitizenAccess(
        time=e.time,
        type=e.type,
        agency=e.actor.agency,
        unit=e.actor.unit,
        staff=e.actor.id if show_staff(e.actor) else None,
        system=e.via.system,
        dataset=e.dataset,
        fields=list(e.fields),
        purpose=p.code if p else None,
        legal_basis=p.legal_basis if p else None,
        consent_id=p.consent_id if p else None,
        recipient=(r.name or r.id) if r else None,
    )


def citizen_accesses(
    ledger: Ledger,
    citizen_ref: str,
    *,
    sealed_cases: SealedCases = lambda: (),
    show_staff: StaffVisible = _hide_staff,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
) -> list[CitizenAccess]:
    sealed = set(sealed_cases())
    out = []
    for entry in ledger.citizen_entries(citizen_ref, since, until):
        e = entry.event
        if e.type not in CITIZEN_VISIBLE:
            continue
        if e.purpose and e.purpose.case_id and e.purpose.case_id in sealed:
            continue
        out.append(to_citizen_view(e, show_staff))
    out.sort(key=lambda a: a.time, reverse=True)
    return out[:limit]
