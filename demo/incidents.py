"""The planted incidents: real misuse through the real gateway (and key tooling), each with the SIEM
rule that must catch it.

=====================  ==========================================  ======================================
incident               what happens                                rule
=====================  ==========================================  ======================================
vip_snooping           a supervisor opens a well-known person's    protected_record_access
                       file in their office (not a custodian)
off_hours_export       a supervisor pulls record after record of   off_hours_access
                       their office's cases at 22:30 (the PDP
                       starts refusing once the breadth spikes)
fraud_broker           a counter clerk looks victims up, then      fraud_broker_read_then_account_change
                       redirects their payouts to one account
                       under a "data_correction" purpose
account_takeover       a case officer's session is used from       risky_access_special_category
                       Moscow 20 minutes after a read in the
                       office, on an unmanaged device, for injury
                       records (special category)
custodian_bulk_decrypt a key custodian runs the decrypt-everything  key_decrypt_spike
                       verification job over and over (≥ 50,000
                       rows within the hour)
suspended_exchange     a case officer keeps sending a claimant's   disclosure_to_unapproved_recipient
                       record over the legacy exchange whose
                       agreement was suspended (the PDP refuses)
=====================  ==========================================  ======================================

:meth:`Incidents.plan` adds what the incidents need to the bureau before it is written (the
broker's self-opened cases); :meth:`Incidents.steps` returns the timed steps, merged with the benign
week. Each incident collects the ids of the events it produced, so the alert that caught it is
found by evidence, not by guessing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from demo.bureau import Bureau, Case, Staff
from demo.people import PeopleFactory
from demo.traffic import Step, World

ABROAD = (55.7558, 37.6173)  # Moscow: ~7,300 km from any office


@dataclass
class Incident:
    name: str
    title: str
    rule: str
    actor: str
    at: float = 0.0
    ids: set[str] = field(default_factory=set)

    def collect(self, response: Any, *keys: str) -> None:
        """Remember the decision and provenance ids a response names (permit or refusal)."""
        try:
            body = response.json()
        except ValueError:
            return
        if body.get("decision_id"):
            self.ids.add(body["decision_id"])
        prov = body.get("provenance") or {}
        if prov.get("event_id"):
            self.ids.add(prov["event_id"])
        for k in keys:
            if body.get(k):
                self.ids.add(body[k])


class Incidents:
    def __init__(self, bureau: Bureau, anchor: float, seed: int) -> None:
        """``anchor``: local midnight of the day the incidents happen (a full day inside the window)."""
        self.b = bureau
        self.anchor = anchor
        self.rng = random.Random(seed * 7 + 11)
        self.items: dict[str, Incident] = {}
        self._vip_case: Case | None = None
        self._fraud: list[tuple[int, str]] = []
        self._export_cases: list[Case] = []
        self._takeover: tuple[Staff, Case, int] | None = None
        self._exchange: tuple[Staff, Case] | None = None

    def _h(self, hours: float) -> float:
        return self.anchor + hours * 3600

    def _staff(self, role: str, office: str | None = None, exclude: set[str] | None = None) -> Staff:
        """The first fitting staff member; with a compliant laptop, so the incident is judged on what it
        does rather than refused for an unpatched device."""
        fits = [s for s in self.b.by_role(role) if s.id not in (exclude or set()) and s.id not in self.b.custodians]
        pool = [s for s in fits if office is None or s.office == office] or fits
        chosen = next((s for s in pool if s.compliant), pool[0])
        chosen.compliant = True  # written to the directory as such: the bureau's view of that laptop
        return chosen

    def _office_case(self, office: str, exclude: int) -> None:
        """Make sure ``office`` has an ordinary open case besides the well-known person's (small bureaus
        may have none): the supervisor's ordinary read earlier that day is on it."""
        if any(c.office == office and c.kind == "benefit" and c.status == "open" and c.citizen != exclude
               for c in self.b.cases.values()):
            return
        citizen = next(c for c in self.b.citizens if not c.well_known and c.index != exclude)
        officer = self._staff("case_officer", office)
        case = Case(f"C-{self.b.today.year}-W{citizen.index:05d}", citizen.index, office, ["benefit_review"],
                    [officer.id], "open", "benefit")
        self.b.cases[case.id] = case

    # -- before the bureau is written ----------------------------------------------------------
    def plan(self) -> None:
        b = self.b
        vip = b.well_known()[0]
        vip_case = next((c for c in b.cases.values() if c.citizen == vip.index and c.status == "open"), None)
        if vip_case is None:
            vip_case = Case(f"C-{b.today.year}-V{vip.index:05d}", vip.index, vip.office, ["benefit_review"],
                            [b.custodians[0]], "open", "vip")
            b.cases[vip_case.id] = vip_case
        self._vip_case = vip_case
        self._office_case(vip.office, vip.index)
        snooper = self._staff("supervisor", vip.office)
        self.items["vip_snooping"] = Incident("vip_snooping", "snooping on a well-known person",
                                              "protected_record_access", snooper.id, self._h(14.2))

        # The exporter supervises an office other than the VIP's, with open cases to pull.
        offices = sorted({c.office for c in b.cases.values() if c.kind == "benefit" and c.status == "open"}
                         - {vip.office})
        office = offices[0] if offices else vip.office
        exporter = self._staff("supervisor", office, exclude={snooper.id})
        self._export_cases = [c for c in b.cases.values()
                              if c.office == exporter.office and c.kind == "benefit" and c.status == "open"]
        self.items["off_hours_export"] = Incident("off_hours_export", "an off-hours bulk export",
                                                  "off_hours_access", exporter.id, self._h(22.5))

        broker = self._staff("counter_staff")
        taken = {c.citizen for c in b.cases.values() if c.kind in ("counter", "vip")}
        victims = [c for c in b.citizens if not c.well_known and c.index not in taken][:3]
        for v in victims:
            case = Case(f"C-{b.today.year}-F{v.index:05d}", v.index, broker.office, ["data_correction"],
                        [broker.id], "open", "fraud")
            b.cases[case.id] = case
            self._fraud.append((v.index, case.id))
        self.mule = PeopleFactory.bank_account_from(self.rng)
        self.items["fraud_broker"] = Incident("fraud_broker", "a fraud broker changing bank accounts",
                                              "fraud_broker_read_then_account_change", broker.id, self._h(10))

        injured = {cl.case_id: cl.injury_id for cl in b.claims if cl.injury_id}
        for case in b.cases.values():
            if case.status == "open" and case.id in injured and case.kind == "benefit":
                officer = next((b_s for b_s in b.staff if b_s.id == case.assignees[0]), None)
                if officer and officer.role == "case_officer" and officer.id not in b.custodians:
                    self._takeover = (officer, case, injured[case.id])
                    break
        if self._takeover is None:  # tiny bureaus: any officer, any injury record
            officer = self._staff("case_officer")
            case = next(c for c in b.cases.values() if officer.id in c.assignees) if any(
                officer.id in c.assignees for c in b.cases.values()) else next(iter(b.cases.values()))
            self._takeover = (officer, case, next(iter(injured.values()), 1))
        self.items["account_takeover"] = Incident("account_takeover", "a taken-over account (impossible travel)",
                                                  "risky_access_special_category", self._takeover[0].id,
                                                  self._h(11))
        custodian = self._staff("key_custodian")
        self.items["custodian_bulk_decrypt"] = Incident("custodian_bulk_decrypt", "a key custodian decrypting in bulk",
                                                        "key_decrypt_spike", custodian.id, self._h(13))

        # An officer with an ordinary open case of their own, not one of the other incidents' actors.
        busy = {i.actor for i in self.items.values()} | set(b.custodians)
        staff = {s_.id: s_ for s_ in b.staff}
        owners = ((staff.get(c.assignees[0]), c) for c in b.cases.values()
                  if c.kind == "benefit" and c.status == "open" and c.assignees)
        own = next(((s_, c) for s_, c in owners
                    if s_ and s_.role == "case_officer" and s_.compliant and s_.id not in busy), None)
        if own is not None:  # every bureau the seed makes has one; a hand-made tiny one may not
            self._exchange = own
            self.items["suspended_exchange"] = Incident(
                "suspended_exchange", "disclosures over a suspended exchange agreement",
                "disclosure_to_unapproved_recipient", own[0].id, self._h(16))

    # -- the timed steps -------------------------------------------------------------------------
    def steps(self, seq0: int = 10**9) -> list[Step]:
        steps: list[Step] = []

        def add(t: float, fn: Any) -> None:
            steps.append(Step(t, seq0 + len(steps), fn))

        staff = {s.id: s for s in self.b.staff}
        inc = self.items
        vip_case = self._vip_case
        assert vip_case is not None

        snoop = inc["vip_snooping"]

        def snooping(w: World) -> None:
            who = staff[snoop.actor]
            r = w.read(who, "insured_persons", vip_case.citizen, ["name", "address", "phone", "insured_salary"],
                       "benefit_review", vip_case.id)
            snoop.collect(r)

        add(snoop.at, snooping)
        vip = self.b.well_known()[0]
        self._warm_up(add, staff[snoop.actor], vip.office, snoop.at - 40 * 60, exclude=vip.index)

        export = inc["off_hours_export"]
        cases = self._export_cases

        def exporting(w: World) -> None:
            who = staff[export.actor]
            for i in range(min(150, max(20, 3 * len(cases)))):
                case = cases[i % len(cases)] if cases else vip_case
                r = w.read(who, "insured_persons", case.citizen,
                           ["name", "address", "phone", "bank_account", "insured_salary", "employer"],
                           "benefit_review", case.id)
                export.collect(r)
                w.tick(20)

        add(export.at, exporting)
        self._warm_up(add, staff[export.actor], staff[export.actor].office, self._h(9.3))

        fraud = inc["fraud_broker"]
        for n, (victim, case_id) in enumerate(self._fraud):
            def lookup(w: World, victim: int = victim, case_id: str = case_id) -> None:
                r = w.read(staff[fraud.actor], "insured_persons", victim, ["name", "phone", "bank_account"],
                           "data_correction", case_id)
                fraud.collect(r)

            def redirect(w: World, victim: int = victim, case_id: str = case_id) -> None:
                r = w.update(staff[fraud.actor], "insured_persons", victim, {"bank_account": self.mule},
                             "data_correction", case_id)
                fraud.collect(r)

            add(fraud.at + n * 35 * 60, lookup)
            add(fraud.at + 5 * 3600 + n * 20 * 60, redirect)

        take = inc["account_takeover"]
        assert self._takeover is not None  # chosen with the incidents
        officer, case, injury = self._takeover

        def in_office(w: World) -> None:
            r = w.read(officer, "insured_persons", case.citizen, ["name", "address"], "benefit_review", case.id)
            take.collect(r)

        def from_abroad(w: World) -> None:
            token = w.token(officer)  # the stolen session
            for _ in range(3):
                r = w.read(officer, "injury_claims", injury, ["injury_type", "diagnosis", "disability_grade"],
                           "benefit_review", case.id, token=token, geo=ABROAD, zone="internet",
                           device="dev-unknown-7f3a9c")
                take.collect(r)
                w.tick(40)

        add(take.at, in_office)
        add(take.at + 20 * 60, from_abroad)

        bulk = inc["custodian_bulk_decrypt"]
        add(bulk.at, lambda w: bulk_decrypt(w, bulk))

        if self._exchange is not None:
            exch = inc["suspended_exchange"]
            sender, own_case = self._exchange

            def over_legacy_exchange(w: World) -> None:
                r = w.read(sender, "insured_persons", own_case.citizen, ["name"], "benefit_review", own_case.id)
                exch.collect(r)
                if r.status_code != 200:
                    return
                for _ in range(3):  # refused each time; the officer tries again
                    w.tick(45)  # preparing the reply to the exchange request
                    d = w.disclose(sender, "insured_persons", own_case.citizen, ["name"],
                                   {"type": "agency", "id": "agency-legacy", "channel": "legacy-exchange"},
                                   {"code": "benefit_review", "case_id": own_case.id, "legal_basis": "OLD-2019"},
                                   [r.json()["provenance"]["event_id"]])
                    exch.collect(d)
                    w.tick(300)

            add(exch.at, over_legacy_exchange)
        return steps


    def _warm_up(self, add: Any, who: Staff, office: str, at: float, exclude: int | None = None) -> None:
        """An ordinary read earlier that day: the actor's device and the dataset are known to the PDP, so
        the incident is judged on what it is, not on a first-time login."""
        case = next((c for c in self.b.cases.values() if c.office == office and c.kind == "benefit"
                     and c.status == "open" and c.citizen != exclude), None)
        if case is None:
            return
        add(at, lambda w: w.read(who, "insured_persons", case.citizen, ["name", "insurance_type"],
                                 "benefit_review", case.id))


def bulk_decrypt(w: World, incident: Incident, target_rows: int = 60_000, within_s: float = 1800) -> int:
    """The custodian's decrypt-everything runs (keymgmt's verify job) until ``target_rows`` rows, spread
    over ``within_s`` seconds of simulated time."""
    import math

    import sqlalchemy as sa

    import keymgmt

    rt = w.rt
    engine = rt.protected_engine
    envelope = keymgmt.Envelope(rt.key_provider, engine)
    tables = []
    for spec in keymgmt.registered_specs(engine):
        blind = keymgmt.BlindIndexKeys(rt.key_provider, length=spec.bi_length) if spec.blind_index else None
        tables.append(keymgmt.EncryptedTable(engine, spec, envelope, blind))
    with engine.connect() as conn:
        per_round = sum(conn.execute(sa.select(sa.func.count()).select_from(et.table)).scalar_one() for et in tables)
    runs = math.ceil(target_rows / max(per_round, 1)) * max(len(tables), 1)
    step = within_s / max(runs, 1)
    done = 0
    while done < target_rows and per_round:
        for et in tables:
            report = keymgmt.verify_table(et, audit=rt.key_audit, actor=incident.actor)
            done += report.rows
            w.tick(step)
    return done
