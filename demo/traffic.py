"""A simulated week of benign work, driven through the real gateway over HTTP semantics.

Every request goes through Starlette's ``TestClient`` on ``server.app.create_app(runtime)``: the real
bearer authentication, decision point, decryption gate, provenance ledger, decision log and key audit.
Time is the runtime's :class:`~demo.clock.SimClock`, set to each step's moment before it runs.

Who does what (office hours 08:30–17:30 Asia/Taipei, Monday to Friday):

* case officers read the insured person, their claims and (injury / disability) the special-category
  injury record of their assigned open cases, search by national ID, and disclose to an agency under
  its data-sharing agreement or to a MyData party under the citizen's consent (``derived_from`` the
  read they just made);
* reviewers read the claims of the cases they review; supervisors read cases of their office;
* counter staff serve citizens who came to change their payout account or address (read, then
  ``PATCH``); now and then a walk-in without a case (the policy asks for a step-up);
* call-centre agents read contact fields for phone inquiries (masked by policy).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from faker import Faker

from demo.bureau import AGENCIES, CLAIM_PURPOSE, MYDATA_FIELDS, Bureau, Staff
from demo.clock import SimClock

TZ = ZoneInfo("Asia/Taipei")
CHANNEL = {"counter_staff": "counter", "call_center": "call_center", "supervisor": "case_mgmt",
           "case_officer": "case_mgmt", "reviewer": "case_mgmt"}
TOKEN_REUSE_S = 50 * 60  # a session token is renewed before the policy calls it stale (1 h)
SIGNED_IN_AGO_S = 6 * 60  # sign-in age of a renewed token: past the step-up max_age (5 min), and
                          # with TOKEN_REUSE_S still under the pack's max_token_age_s (1 h)


@dataclass(order=True)
class Step:
    t: float
    seq: int
    run: Callable[[World], None] = field(compare=False)


@dataclass
class Tally:
    """What the driver did and saw, to compare against what the stores recorded."""

    responses: Counter = field(default_factory=Counter)  # (operation, status) -> n
    event_ids: dict[str, list[str]] = field(default_factory=dict)  # event type -> ids from responses
    # Decisions this run obtained (from permits and refusals alike): events in a shared ledger are
    # attributed to this run by them, so a server serving others meanwhile does not skew the counts.
    decision_ids: set[str] = field(default_factory=set)

    def add(self, op: str, status: int, event_type: str | None = None, event_id: str | None = None,
            decision_id: str | None = None) -> None:
        self.responses[(op, status)] += 1
        if decision_id:
            self.decision_ids.add(decision_id)
        if event_type and event_id:
            self.event_ids.setdefault(event_type, []).append(event_id)

    def ok(self, op: str) -> int:
        return sum(n for (o, s), n in self.responses.items() if o == op and s in (200, 201))

    @property
    def requests(self) -> int:
        return sum(self.responses.values())


class World:
    """The gateway as the bureau's applications call it, plus the simulated clock."""

    def __init__(self, runtime: Any, client: Any, bureau: Bureau, clock: SimClock) -> None:
        self.rt = runtime
        self.client = client
        self.bureau = bureau
        self.clock = clock
        self.tally = Tally()
        self.gateway_seconds = 0.0  # wall time spent inside gateway requests (throughput figure)
        self._tokens: dict[tuple[str, str], tuple[float, str]] = {}
        self.staff = {s.id: s for s in bureau.staff}

    def at(self, t: float) -> None:
        """Move the clock to ``t`` (or leave it, if a multi-request step already went past ``t``)."""
        if t > self.clock():
            self.clock.set(t)

    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def token(self, staff: Staff, *, method: str | None = None, fresh: bool = False) -> str:
        """The staff member's current sign-in (renewed hourly); ``fresh``: sign in again now (step-up)."""
        method = method or staff.auth_method
        now = self.clock()
        cached = self._tokens.get((staff.id, method))
        if cached is not None and now - cached[0] < TOKEN_REUSE_S and not fresh:
            return cached[1]
        # A renewed session token keeps its sign-in time, which was a while ago (so a walk-in meets the
        # step-up's max_age only after a fresh sign-in); it stays under the pack's stale-token limit.
        signed_in = int(now) if fresh else int(now) - SIGNED_IN_AGO_S
        tok = self.rt.issuer.issue_subject(staff.id, staff.roles, method=method, mfa=True, org_unit=staff.office,
                                           ttl_seconds=3600, now=now, auth_time=signed_in)
        self._tokens[(staff.id, method)] = (now, tok)
        return tok

    def headers(self, staff: Staff, *, token: str | None = None, geo: tuple[float, float] | None = None,
                zone: str = "internal", device: str | None = None) -> dict[str, str]:
        """What the bureau's proxy passes on: the workstation's id (its posture is in the inventory),
        the network zone and the location. A device the bureau never enrolled has no posture."""
        office = self.bureau.office(staff.office)
        lat, lon = geo or (office.lat, office.lon)
        return {
            "Authorization": f"Bearer {token or self.token(staff)}",
            "X-Device-Id": device or staff.device_id,
            "X-Network-Zone": zone, "X-Channel": CHANNEL.get(staff.role, "gateway"),
            "X-Geo": f"{lat:.4f},{lon:.4f}",
        }

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return getattr(self.client, method)(url, **kw)
        finally:
            self.gateway_seconds += time.perf_counter() - started

    # -- the four gateway operations ------------------------------------------------------------
    def read(self, staff: Staff, dataset: str, record_id: int, fields: list[str], purpose: str,
             case_id: str | None, **hdr: Any) -> Any:
        params = {"fields": ",".join(fields), "purpose": purpose}
        if case_id:
            params["case_id"] = case_id
        r = self._call("get", f"/v1/records/{dataset}/{record_id}", params=params,
                       headers=self.headers(staff, **hdr))
        body = r.json() if r.status_code == 200 else None
        event_id = body["provenance"]["event_id"] if body else None
        self.tally.add("read", r.status_code, "pii.read", event_id, _decision_id(r))
        return r

    def search(self, staff: Staff, dataset: str, national_id: str, purpose: str, case_id: str | None) -> Any:
        r = self._call("post", f"/v1/records/{dataset}/search", headers=self.headers(staff),
                             json={"column": "national_id", "value": national_id, "purpose": purpose,
                                   "case_id": case_id})
        body = r.json() if r.status_code == 200 else None
        event_id = body["provenance"]["event_id"] if body else None
        self.tally.add("search", r.status_code, "pii.search", event_id, _decision_id(r))
        return r

    def update(self, staff: Staff, dataset: str, record_id: int, values: dict[str, str], purpose: str,
               case_id: str | None) -> Any:
        r = self._call("patch", f"/v1/records/{dataset}/{record_id}", headers=self.headers(staff),
                              json={"values": values, "purpose": {"code": purpose, "case_id": case_id}})
        body = r.json() if r.status_code == 200 else None
        event_id = body["provenance"]["event_id"] if body else None
        self.tally.add("update", r.status_code, "pii.update", event_id, _decision_id(r))
        return r

    def disclose(self, staff: Staff, dataset: str, record_id: int, fields: list[str], recipient: dict,
                 purpose: dict, derived_from: list[str]) -> Any:
        r = self._call("post", "/v1/disclosures", headers=self.headers(staff, zone="internal"),
                             json={"dataset": dataset, "record_id": str(record_id), "fields": fields,
                                   "recipient": recipient, "purpose": purpose, "derived_from": derived_from})
        body = r.json() if r.status_code == 201 else None
        self.tally.add("disclose", r.status_code, "pii.disclose", body["event_id"] if body else None, _decision_id(r))
        return r


def _decision_id(response: Any) -> str | None:
    """The decision a response names (permit bodies and problem documents both carry it)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("decision_id") if isinstance(body, dict) else None


# -- the schedule ---------------------------------------------------------------------------------


def local_midnight(d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=TZ).timestamp()


def workdays(start: float, end: float) -> Iterator[date]:
    """Local dates (Mon–Fri) whose office hours overlap [start, end)."""
    d = datetime.fromtimestamp(start, TZ).date()
    last = datetime.fromtimestamp(end, TZ).date()
    while d <= last:
        if d.weekday() < 5:
            yield d
        d += timedelta(days=1)


def actions_per_day(citizens: int) -> int:
    """Each clerk's requests per day, scaled so the caseload per clerk stays plausible."""
    return max(1, min(6, round(citizens / 350)))


class Plan:
    """Builds the benign steps of the window [start, end) for the bureau (deterministic for a seed)."""

    def __init__(self, bureau: Bureau, start: float, end: float, seed: int) -> None:
        self.b = bureau
        self.start, self.end = start, end
        self.rng = random.Random(seed * 104729 + 3)
        self.faker = Faker("zh_TW")
        self.faker.seed_instance(seed + 1)
        self.seq = 0
        self.steps: list[Step] = []
        self.citizens = {c.index: c for c in bureau.citizens}
        self.claims_by_case: dict[str, list[Any]] = {}
        for cl in bureau.claims:
            self.claims_by_case.setdefault(cl.case_id, []).append(cl)
        self.open_cases: dict[str, list[str]] = {}
        self.unit_cases: dict[str, list[str]] = {}
        for cid, case in bureau.cases.items():
            if case.status != "open" or case.kind == "fraud":  # the broker's cases are the incident's
                continue
            for sid in case.assignees:
                self.open_cases.setdefault(sid, []).append(cid)
            if case.kind == "benefit":
                self.unit_cases.setdefault(case.office, []).append(cid)
        self.consent_of: dict[int, tuple[str, str]] = {}
        for cns_id, c in bureau.consents.items():
            if not c["revoked"]:
                self.consent_of[c["citizen"]] = (cns_id, c["party"])
        self.started: set[str] = set()  # staff who already made a request (their device is known)
        self.used_today: dict[str, set[str]] = {}  # staff → cases touched today
        self.changed: set[str] = set()  # counter cases whose change was already made
        self.walk_ins = [c for c in bureau.citizens if not c.well_known]  # custodians serve the well known

    def add(self, t: float, run: Callable[[World], None]) -> None:
        if self.start <= t < self.end:
            self.seq += 1
            self.steps.append(Step(t, self.seq, run))

    def build(self) -> list[Step]:
        per_day = actions_per_day(len(self.b.citizens))
        for day in workdays(self.start, self.end):
            midnight = local_midnight(day)
            self.used_today = {}
            for staff in self.b.staff:
                make = getattr(self, f"_{staff.role}", None)
                if make is None:
                    continue
                n = self.actions(staff, per_day)
                t = midnight + 8.5 * 3600 + self.rng.uniform(0, 3600)
                close = midnight + 17.5 * 3600
                gap = (close - t) / n
                for _ in range(n):
                    make(staff, t)
                    t += self.rng.uniform(0.3, 1.0) * gap
        self.steps.sort()
        return self.steps

    def actions(self, staff: Staff, per_day: int) -> int:
        """A clerk looks at each open case about twice a week (not the same citizen all day long, which
        is what the curiosity-swarm and bulk rules look for); supervisors sample their office's cases."""
        if staff.role == "supervisor":
            return per_day
        caseload = len(self.open_cases.get(staff.id, ()))
        return max(1, min(per_day, math.ceil(caseload * 2 / 5)))

    def pick(self, staff: Staff, cases: list[str] | None) -> str | None:
        """One of ``cases`` this staff member has not touched today (None once all were)."""
        used = self.used_today.setdefault(staff.id, set())
        fresh = [c for c in cases or () if c not in used]
        if not fresh:
            return None
        cid = self.rng.choice(fresh)
        used.add(cid)
        return cid

    # -- one action per role -----------------------------------------------------------------
    def _case_officer(self, staff: Staff, t: float) -> None:
        cid = self.pick(staff, self.open_cases.get(staff.id))
        if cid is None:
            return
        case = self.b.cases[cid]
        citizen = self.citizens[case.citizen]
        claims = self.claims_by_case.get(cid, [])
        purpose = next((CLAIM_PURPOSE[c.kind] for c in claims), "benefit_review")
        first = staff.id not in self.started
        self.started.add(staff.id)
        roll = self.rng.random()
        if roll < 0.45 or first:
            fields = self.rng.sample(["name", "address", "phone", "bank_account", "insured_salary", "employer",
                                      "birth_date", "insurance_type"], k=self.rng.randint(2, 5))
            self.add(t, lambda w: w.read(staff, "insured_persons", citizen.index, fields, purpose, cid))
        elif roll < 0.70 and claims:
            cl = self.rng.choice(claims)
            self.add(t, lambda w: w.read(staff, "claims", cl.id, ["claim_type", "claim_status", "payment_amount",
                                                                  "bank_account"], purpose, cid))
        elif roll < 0.80 and any(c.injury_id for c in claims):
            inj = next(c.injury_id for c in claims if c.injury_id)
            self.add(t, lambda w: w.read(staff, "injury_claims", inj, ["injury_type", "diagnosis", "disability_grade",
                                                                       "accident_date"], purpose, cid))
        elif roll < 0.88:
            nid = citizen.person.national_id
            self.add(t, lambda w: w.search(staff, "insured_persons", nid, purpose, cid))
        elif citizen.index in self.consent_of and self.rng.random() < 0.5:
            consent_id, party = self.consent_of[citizen.index]
            self.add(t, lambda w: _disclose_flow(w, staff, citizen.index, MYDATA_FIELDS, cid,
                                                 {"type": "mydata", "id": party},
                                                 {"code": "mydata_service", "case_id": cid, "consent_id": consent_id}))
        else:
            agency = self.rng.choice([a for a in AGENCIES if a["status"] == "approved"])
            self.add(t, lambda w: _disclose_flow(w, staff, citizen.index, list(agency["fields"]), cid,
                                                 {"type": "agency", "id": agency["id"], "channel": "gsp-exchange"},
                                                 {"code": "inter_agency_exchange", "case_id": cid,
                                                  "legal_basis": agency["legal_basis"]}))

    def _reviewer(self, staff: Staff, t: float) -> None:
        cid = self.pick(staff, [c for c in self.open_cases.get(staff.id, []) if self.claims_by_case.get(c)])
        if cid is None:
            return
        cl = self.rng.choice(self.claims_by_case[cid])
        self.started.add(staff.id)
        self.add(t, lambda w: w.read(staff, "claims", cl.id, ["claim_type", "claim_status", "payment_amount",
                                                              "payment_date"], "benefit_review", cid))

    def _supervisor(self, staff: Staff, t: float) -> None:
        if self.rng.random() < 0.5:
            return
        cid = self.pick(staff, self.unit_cases.get(staff.office))
        if cid is None:
            return
        claims = self.claims_by_case.get(cid)
        if not claims:
            return
        cl = self.rng.choice(claims)
        self.started.add(staff.id)
        self.add(t, lambda w: w.read(staff, "claims", cl.id, ["claim_type", "claim_status", "payment_amount"],
                                     "benefit_review", cid))

    def _counter_staff(self, staff: Staff, t: float) -> None:
        cases = self.open_cases.get(staff.id)
        if self.rng.random() < 0.03:  # a walk-in without a case: the policy wants a fresh FIDO2 sign-in
            c = self.rng.choice(self.walk_ins)
            self.add(t, lambda w: _walk_in(w, staff, c.index))
            return
        cid = self.pick(staff, cases)
        if cid is None:
            return
        case = self.b.cases[cid]
        citizen = self.citizens[case.citizen]
        self.started.add(staff.id)
        if cid in self.changed or self.rng.random() < 0.5:  # one change per visit; later, a look-up
            self.add(t, lambda w: w.read(staff, "insured_persons", citizen.index, ["name", "phone", "address",
                                                                                   "bank_account"],
                                         "benefit_review", cid))
            return
        if self.rng.random() < 0.5:
            from demo.people import PeopleFactory

            values, purpose, fields = ({"bank_account": PeopleFactory.bank_account_from(self.rng)},
                                       "bank_account_change", ["name", "bank_account"])
        else:
            values, purpose, fields = {"address": self.faker.address()}, "address_change", ["name", "address"]
        self.changed.add(cid)
        self.add(t, lambda w: _change_flow(w, staff, citizen.index, fields, values, purpose, cid))

    def _call_center(self, staff: Staff, t: float) -> None:
        cid = self.pick(staff, self.open_cases.get(staff.id))
        if cid is None:
            return
        citizen = self.citizens[self.b.cases[cid].citizen]
        self.started.add(staff.id)
        self.add(t, lambda w: w.read(staff, "insured_persons", citizen.index,
                                     ["name", "phone", "address", "insurance_type"], "inquiry", cid))


def _disclose_flow(w: World, staff: Staff, record: int, fields: list[str], case_id: str, recipient: dict,
                   purpose: dict) -> None:
    r = w.read(staff, "insured_persons", record, fields, purpose["code"], case_id)
    if r.status_code != 200:
        return
    body = r.json()
    w.tick(45)  # the officer prepares the reply to the exchange request
    w.disclose(staff, "insured_persons", record, sorted(body["fields"]), recipient, purpose,
               [body["provenance"]["event_id"]])


def _walk_in(w: Any, staff: Staff, record_id: int) -> None:
    """A citizen at the counter without a case: the gateway answers 401 with an RFC 9470 challenge
    (acr_values, max_age) unless the clerk signed in with FIDO2 in the last few minutes; the clerk
    touches their key (a fresh sign-in) and the read goes through."""
    fields = ["name", "phone"]
    r = w.read(staff, "insured_persons", record_id, fields, "benefit_review", None)
    if r.status_code == 401 and "insufficient_user_authentication" in r.headers.get("www-authenticate", ""):
        w.tick(15)
        w.read(staff, "insured_persons", record_id, fields, "benefit_review", None,
               token=w.token(staff, fresh=True))


def _change_flow(w: World, staff: Staff, record: int, fields: list[str], values: dict[str, str], purpose: str,
                 case_id: str) -> None:
    r = w.read(staff, "insured_persons", record, fields, purpose, case_id)
    if r.status_code != 200:
        return
    w.tick(120)  # the citizen fills in and signs the change form
    w.update(staff, "insured_persons", record, values, purpose, case_id)


def run_steps(world: World, steps: list[Step], advance: Callable[[int], None] | None = None) -> None:
    for step in steps:
        world.at(step.t)
        step.run(world)
        if advance is not None:
            advance(1)


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
