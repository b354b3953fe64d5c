"""Synthetic traffic of a social-insurance bureau: a benign week, and planted incidents.

Used by the tests (false-positive budget, every incident caught, incremental = full), the
benchmark and demos. Deterministic for a seed. Events have their producers' shapes: decisions are
complete decision-log entries (``contracts.decision_log``), provenance events are ledger events
(``contracts.provenance_event``). Only real-shaped references (``cr_…``, ``ba_…``, from
``siem_rules.fixtures.synthetic_citizen_ref``) appear, never personal values, exactly like real events.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from siem_rules.config import SiemConfig
from siem_rules.fixtures import synthetic_bank_account_ref, synthetic_citizen_ref, synthetic_intermediary_ref
from siem_rules.store import paused_gc

Event = tuple[str, dict[str, Any]]
WEEK_START = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # Mon 2026-03-02 00:00 Asia/Taipei
TZ_OFFSET = timedelta(hours=8)
TAIPEI = timezone(TZ_OFFSET)
SERVICES = ("svc-benefits", "svc-pension", "svc-exchange", "svc-mydata", "pep-gateway")
ALLOWED_RECIPIENTS = ["agency-tax-exchange", "agency-health-exchange", "mydata:*"]
PROTECTED = [synthetic_citizen_ref(f"vip-{n}") for n in (1, 2, 3)]
# Peer groups for the behavioural baselines: 12 offices × 3 roles (the decision log's org_unit and roles).
OFFICES = 12
ROLES = ("case_officer", "counter_clerk", "reviewer")
INTERMEDIARIES = 200  # agents and doctors named on claims
CLAIM_SHARE = 0.02  # of benefit and injury cases, a claim is filed (naming its agent or doctor)


def staff_ref(n: int) -> str:
    """The citizen_ref of employee ``emp-{n:04d}`` (their own insurance record)."""
    return synthetic_citizen_ref(f"staff-{n}")


def bureau_config(**overrides: Any) -> SiemConfig:
    """The configuration a bureau would run with (lists of its protected citizens, partners…)."""
    base = SiemConfig(
        protected_citizens=PROTECTED,
        protected_record_custodians=["emp-0001", "emp-0002"],
        employee_citizen_refs=[staff_ref(n) for n in range(1, 501)],
        external_recipients_allowed=ALLOWED_RECIPIENTS,
        batch_principals=["svc-*", "pep-gateway"],
    )
    return base.with_overrides(overrides) if overrides else base


def _record_id(citizen: str) -> str:
    # Eight base32 characters: too short to be shaped like a national ID for the ledger's PII screen.
    return f"rec-{citizen[3:11]}"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _every(start: datetime, step: timedelta, n: int) -> list[datetime]:
    """The times of a burst: ``n`` of them, ``step`` apart from ``start``."""
    return [start + step * i for i in range(n)]


def office_of(actor: str) -> str:
    """An employee's office (``emp-0042`` → ``office-06``), fixed by their number."""
    n = int(actor.rsplit("-", 1)[-1]) if actor[-1:].isdigit() else 0
    return f"office-{(n - 1) % OFFICES + 1:02d}"


def role_of(actor: str) -> str:
    n = int(actor.rsplit("-", 1)[-1]) if actor[-1:].isdigit() else 0
    return ROLES[((n - 1) // OFFICES) % len(ROLES)]


class Traffic:
    def __init__(self, seed: int = 7, employees: int = 500, citizens: int = 2_000_000) -> None:
        self.rng = random.Random(seed)
        # Claims draw from their own stream, so adding them left every other event of a seed as it was.
        self.claims_rng = random.Random(seed * 7919 + 1)
        self.employees = [f"emp-{n:04d}" for n in range(1, employees + 1)]
        self.citizens = citizens
        self.n = 0
        # Some agents and clinics file far more claims than others (a few big hospitals, many small ones).
        self.intermediaries = [synthetic_intermediary_ref(f"agent-{i}") for i in range(INTERMEDIARIES)]
        self.intermediary_weights = [self.claims_rng.lognormvariate(0, 1) for _ in range(INTERMEDIARIES)]

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n:09d}"

    def citizen(self) -> str:
        return synthetic_citizen_ref(self.rng.randrange(self.citizens))

    # ---- event builders ----

    def decision(
        self,
        t: datetime,
        actor: str,
        citizen: str,
        *,
        effect: str = "permit",
        action: str = "read",
        purpose: dict[str, Any] | None = None,
        signals: dict[str, Any] | None = None,
        classification: str = "personal",
        dataset: str = "labour_insurance",
        event_id: str | None = None,
        device: str | None = None,
        reasons: list[str] | None = None,
    ) -> Event:
        purpose = purpose or {
            "code": "benefit_claim",
            "case_id": f"case-{self.rng.randrange(10**7):07d}",
            "legal_basis": "LIA-art-20",
        }
        local = t.astimezone(TAIPEI)
        sig = {
            "auth_strength": 3,
            "token_age_s": 1800,
            "recent_denies_1h": 0,
            "failed_step_ups_1h": 0,
            "device_first_seen": False,
            "location_unknown": False,
            "off_hours": False,
            "holiday": False,
            "local_hour": local.hour,
            "impossible_travel": False,
            "travel_speed_kmh": 0.0,
            "request_rate_1m": 1,
            "distinct_citizens_10m": 2,
            "distinct_citizens_1h": 3,
            "first_dataset_access": False,
            "self_record": False,
        }
        sig.update(signals or {})
        logged_purpose = {"code": None, "case_id": None, "legal_basis": None, "consent_id": None,
                          "break_glass": False, "justification_present": False, "justification_length": 0}
        logged_purpose.update(purpose)
        if reasons is None:
            reasons = ["policy_permit"] if effect == "permit" else ["no_case"]
        if logged_purpose["justification_present"] and not logged_purpose["justification_length"]:
            logged_purpose["justification_length"] = 40
        return "decision", {  # a complete decision-log entry (contracts.decision_log.DecisionLogEntry)
            "decision_id": event_id or self._id("dec"),
            "timestamp": _iso(t),
            "ts": t.timestamp(),
            "path": "ztcp/authz/decision",
            "input": {
                "subject": {
                    "id": actor,
                    "type": "employee",
                    "roles": [role_of(actor)],
                    "org_unit": office_of(actor),
                    "citizen_ref": None,
                    "auth": {"method": "fido2", "mfa": True, "auth_time": None, "token_age_s": 1800},
                },
                "device": {
                    "id": device or f"dev-{actor}",
                    "managed": True,
                    "compliant": True,
                    "posture": {"baseline_ok": True, "edr_running": True, "disk_encrypted": True, "patch_age_days": 3},
                },
                "context": {
                    "ip": "10.20.0.5",
                    "network_zone": "internal",
                    "channel": "counter",
                    "time": local.isoformat(),
                    "client_time": None,
                    "geo": {"lat": 25.04, "lon": 121.56, "country": "TW"},
                },
                "resource": {
                    "type": "insured_person",
                    "dataset": dataset,
                    "record_id": _record_id(citizen),
                    "citizen_ref": citizen,
                    "fields": ["name", "address", "insured_salary"],
                    "classification": classification,
                },
                "action": action,
                "purpose": logged_purpose,
                "recipient": None,
                "signals": sig,
            },
            "result": {
                "effect": effect,
                "risk": {"score": 12, "level": "low", "factors": []},
                "reasons": reasons,
                "obligations": [{"type": "mask", "fields": ["national_id"]}],
                "permitted_fields": ["name", "address"] if effect == "permit" else [],
            },
            "bundles": {"ztcp": {"revision": "r42", "digest": "sha256:" + "ab" * 32}},
            "labels": {"engine": "regorus-rvm"},
            "metrics": {"timer_rego_query_eval_ns": 150_000, "timer_server_handler_ns": 180_000},
            "requested_by": "counter-app",
        }

    def prov(
        self,
        t: datetime,
        actor: str,
        citizen: str | None,
        type_: str = "pii.read",
        *,
        purpose: dict[str, Any] | None = None,
        event_id: str | None = None,
        **extra: Any,
    ) -> Event:
        service = actor.startswith(("svc-", "pep-"))
        ev: dict[str, Any] = {  # a ledger event (contracts.provenance_event.ProvenanceEvent), nulls left out
            "event_id": event_id or self._id("pv"),
            "time": _iso(t),
            "type": type_,
            "actor": {"id": actor, "type": "service" if service else "staff"},
            "via": {"system": "counter-app", "channel": "counter", "ip": "10.20.0.5"},
            "dataset": "labour_insurance",
            "fields": ["name", "address", "insured_salary"],
            "decision_id": self._id("dec"),
            "effect": "permit",
        }
        if citizen is not None:
            ev["citizen_ref"], ev["record_id"] = citizen, _record_id(citizen)
        purpose = {"code": "benefit_claim", "case_id": "case-1", "legal_basis": "LIA-art-20"} if purpose is None \
            else {k: v for k, v in purpose.items() if v is not None}
        if purpose:  # {} = recorded without a purpose
            ev["purpose"] = purpose
        if type_ == "pii.disclose":  # a disclosure names the reads it discloses
            ev["derived_from"] = [self._id("pv")]
        ev.update(extra)
        return "provenance", ev

    def key(
        self,
        t: datetime,
        actor: str,
        type_: str = "key.decrypt",
        *,
        key_name: str = "pii-fields",
        count: int | None = 100,
        event_id: str | None = None,
        **extra: Any,
    ) -> Event:
        return "key", {
            "event_id": event_id or self._id("key"),
            "time": _iso(t),
            "type": type_,
            "actor": actor,
            "key_name": key_name,
            "key_version": 3,
            "dataset": "labour_insurance",
            "count": count,
            **extra,
        }

    def policy(self, t: datetime, actor: str, type_: str, *, event_id: str | None = None, **extra: Any) -> Event:
        return "policy", {
            "event_id": event_id or self._id("pol"),
            "time": _iso(t),
            "type": type_,
            "actor": actor,
            "revision": "r43",
            "digest": "sha256:ab",
            **extra,
        }

    # ---- a benign week ----

    def benign(self, days: int = 7, reads_per_hour: float = 6.0, start: datetime = WEEK_START) -> list[Event]:
        out: list[Event] = []
        with paused_gc():
            self._benign(out, days, reads_per_hour, start)
        out.sort(key=lambda e: e[1].get("timestamp") or e[1]["time"])
        return out

    def _benign(self, out: list[Event], days: int, reads_per_hour: float, start: datetime) -> None:
        for day in range(days):
            d0 = start + timedelta(days=day)
            weekday = (d0 + TZ_OFFSET).weekday()
            if weekday < 5:
                for emp in self.employees:
                    out.extend(self._workday(d0, emp, reads_per_hour))
                out.extend(self._day_extras(d0))
            out.extend(self._services(d0, weekday))

    def _workday(self, d0: datetime, emp: str, rate: float) -> list[Event]:
        rng = self.rng
        out: list[Event] = []
        begin = 8 * 3600 + rng.randrange(0, 3600)
        end = 17 * 3600 + rng.randrange(0, 2 * 3600 + 1800)  # some stay until ~19:30 (off hours: 21-07)
        t = begin
        while t < end:
            # one case: a citizen, a few reads of their record, sometimes an update
            citizen = self.citizen()
            case = {
                "code": rng.choice(["benefit_claim", "enrolment", "injury_claim", "pension_review"]),
                "case_id": f"case-{rng.randrange(10**7):07d}",
                "legal_basis": "LIA-art-20",
            }
            special = case["code"] == "injury_claim"
            for _ in range(rng.randint(1, 4)):
                if t >= end:
                    break  # the office day is over; the case continues tomorrow
                when = d0 + timedelta(seconds=t)
                # A small share of requests is denied (wrong purpose); clerks move on to the next case.
                if rng.random() < 0.01:
                    out.append(self.decision(when, emp, self.citizen(), effect="deny", purpose=case))
                dec = self.decision(
                    when,
                    emp,
                    citizen,
                    purpose=case,
                    classification="special" if special else "personal",
                    dataset="occupational_injury" if special else "labour_insurance",
                )
                out.append(dec)
                out.append(
                    self.prov(
                        when + timedelta(milliseconds=40), emp, citizen, purpose=case, decision_id=dec[1]["decision_id"]
                    )
                )
                t += int(rng.expovariate(rate / 3600.0)) + 20
            if special or case["code"] == "benefit_claim":
                out.extend(self._claim(d0 + timedelta(seconds=min(t, end)), emp, citizen, case["case_id"]))
            if rng.random() < 0.03:  # a citizen-requested account/address change at the counter
                when = d0 + timedelta(seconds=t)
                kind = rng.choice(["bank_account", "address"])
                extra = {}
                if kind == "bank_account":
                    extra = {"bank_account_ref": synthetic_bank_account_ref(f"own-{citizen}")}
                out.append(
                    self.prov(
                        when,
                        emp,
                        citizen,
                        "pii.update",
                        fields=[kind],
                        purpose={
                            "code": f"{kind}_change" if kind == "bank_account" else "address_change",
                            "case_id": case["case_id"],
                        },
                        **extra,
                    )
                )
        return out

    def _claim(self, when: datetime, emp: str, citizen: str, case_id: str,
               intermediary: str | None = None, event_id: str | None = None) -> list[Event]:
        """Now and then a case is a filed claim: its intake names the agent or doctor behind it."""
        if intermediary is None:
            if self.claims_rng.random() >= CLAIM_SHARE:
                return []
            intermediary = self.claims_rng.choices(self.intermediaries, self.intermediary_weights)[0]
        return [self.prov(when, emp, citizen, "pii.update", fields=["claim_status"], event_id=event_id,
                          dataset="claims", purpose={"code": "claim_intake", "case_id": case_id},
                          intermediary_ref=intermediary)]

    def _day_extras(self, d0: datetime) -> list[Event]:
        rng = self.rng
        out: list[Event] = []
        # a couple of justified break-glass uses by different officers
        for _ in range(rng.randint(0, 1)):
            emp = rng.choice(self.employees)
            out.append(
                self.decision(
                    d0 + timedelta(hours=rng.uniform(9, 16)),
                    emp,
                    self.citizen(),
                    purpose={
                        "code": "emergency",
                        "case_id": "case-em",
                        "break_glass": True,
                        "justification_present": True,
                    },
                )
            )
        # new laptops on ordinary data
        for _ in range(rng.randint(0, 3)):
            emp = rng.choice(self.employees)
            out.append(
                self.decision(
                    d0 + timedelta(hours=rng.uniform(9, 16)),
                    emp,
                    self.citizen(),
                    signals={"device_first_seen": True},
                    device=f"dev-new-{emp}",
                )
            )
        # spouses sharing one payout account (two citizens, one account)
        a, b = self.citizen(), self.citizen()
        for c in (a, b):
            out.append(
                self.prov(
                    d0 + timedelta(hours=rng.uniform(9, 16)),
                    rng.choice(self.employees),
                    c,
                    "pii.update",
                    fields=["bank_account"],
                    bank_account_ref=synthetic_bank_account_ref(f"household-{a}"),
                    purpose={"code": "bank_account_change", "case_id": "case-h"},
                )
            )
        return out

    def _services(self, d0: datetime, weekday: int) -> list[Event]:
        rng = self.rng
        out: list[Event] = []
        # nightly payment batch 01:00-04:00 local (off hours, but a service principal)
        for i in range(300):
            when = d0 + timedelta(hours=1, seconds=i * 36)
            out.append(
                self.prov(
                    when,
                    "svc-benefits",
                    self.citizen(),
                    purpose={"code": "monthly_payment", "legal_basis": "LIA-art-20"},
                )
            )
        # exchange backbone and MyData disclosures through the day
        for i in range(400):
            when = d0 + timedelta(hours=8, seconds=i * 90)
            if rng.random() < 0.7:
                out.append(
                    self.prov(
                        when,
                        "svc-exchange",
                        self.citizen(),
                        "pii.disclose",
                        recipient={"type": "agency", "id": rng.choice(ALLOWED_RECIPIENTS[:2])},
                        purpose={"code": "inter_agency", "legal_basis": "SIA-art-9"},
                    )
                )
            else:
                out.append(
                    self.prov(
                        when,
                        "svc-mydata",
                        self.citizen(),
                        "pii.disclose",
                        recipient={"type": "mydata", "id": f"mydata:bank-{rng.randint(1, 9)}"},
                        purpose={"code": "mydata", "consent_id": "cons-1", "legal_basis": "consent"},
                    )
                )
        # key service: decrypts by known principals every 5 minutes
        for i in range(288):
            when = d0 + timedelta(minutes=5 * i)
            for svc in ("svc-benefits", "svc-pension", "pep-gateway"):
                out.append(
                    self.key(
                        when + timedelta(seconds=rng.randrange(60)),
                        svc,
                        "key.bulk_decrypt" if svc == "svc-benefits" else "key.decrypt",
                        count=rng.randint(20, 3000),
                    )
                )
            if rng.random() < 0.02:  # an occasional expired token
                out.append(self.key(when, "pep-gateway", "key.decrypt_refused", count=None, reason="expired"))
        if weekday == 5:  # Saturday 02:30 local: planned rotation + rewrap inside the change window
            out.append(self.key(d0 + timedelta(hours=2, minutes=30), "admin-keys", "key.rotate", count=None))
            out.append(self.key(d0 + timedelta(hours=2, minutes=45), "admin-keys", "key.rewrap", count=None))
        if weekday in (1, 3):  # maker-checker policy changes
            t = d0 + timedelta(hours=10)
            out.append(self.policy(t, "officer-1", "policy.propose"))
            out.append(self.policy(t + timedelta(hours=1), "officer-2", "policy.approve"))
            out.append(self.policy(t + timedelta(hours=2), "officer-1", "policy.publish"))
        return out

    # ---- incidents ----

    def incidents(self, start: datetime = WEEK_START) -> dict[str, tuple[str, list[Event]]]:
        """Planted incidents: name -> (rule that must catch it, its events). Event ids start 'inc-'."""
        wed = start + timedelta(days=2)  # Wednesday 00:00 local
        at = lambda h, m=0: wed + timedelta(hours=h, minutes=m)  # noqa: E731
        n = iter(range(10**6))
        iid = lambda name: f"inc-{name}-{next(n):05d}"  # noqa: E731
        inc: dict[str, tuple[str, list[Event]]] = {}

        inc["self_record"] = (
            "self_record_read",
            [
                self.decision(
                    at(10, 5), "emp-0123", staff_ref(123), signals={"self_record": True}, event_id=iid("self")
                )
            ],
        )
        inc["coworker"] = (
            "related_record_read_without_case",
            [
                self.decision(
                    at(11),
                    "emp-0200",
                    staff_ref(77),
                    purpose={"code": "inquiry", "case_id": None},
                    event_id=iid("rel"),
                )
            ],
        )
        inc["disclosure"] = (
            "disclosure_to_unapproved_recipient",
            [
                self.decision(
                    at(15, 40), "emp-0410", synthetic_citizen_ref("probe-1"), effect="deny", action="disclose",
                    reasons=["recipient_no_agreement"], event_id=iid("disc"),
                )
            ],
        )
        inc["vip"] = ("protected_record_access", [self.prov(at(14), "emp-0300", PROTECTED[0], event_id=iid("vip"))])
        inc["no_purpose"] = (
            "access_without_case_or_purpose",
            [self.prov(at(15), "emp-0301", self.citizen(), purpose={}, event_id=iid("nop"))],
        )
        inc["bulk"] = (
            "bulk_reads_by_actor",
            [
                self.prov(at(13, 0) + timedelta(seconds=10 * i), "emp-0666", synthetic_citizen_ref(f"bulk-{i % 40}"),
                          event_id=iid("bulk"))
                for i in range(250)
            ],
        )
        inc["breadth"] = (
            "breadth_spike_distinct_citizens",
            [
                self.prov(at(9, 30) + timedelta(seconds=40 * i), "emp-0777", synthetic_citizen_ref(f"wide-{i}"),
                          event_id=iid("wide"))
                for i in range(80)
            ],
        )
        inc["swarm"] = (
            "curiosity_swarm",
            [self.prov(at(9 + i), f"emp-04{i:02d}", synthetic_citizen_ref("news-1"), event_id=iid("swarm"))
             for i in range(7)],
        )
        inc["off_hours"] = (
            "off_hours_access",
            [
                self.prov(t, "emp-0444", self.citizen(), event_id=iid("night"))
                for t in _every(at(23, 30), timedelta(minutes=3), 5)
            ],
        )
        inc["break_glass"] = (
            "break_glass_without_justification",
            [
                self.decision(
                    at(12),
                    "emp-0250",
                    self.citizen(),
                    purpose={"code": "emergency", "break_glass": True},
                    event_id=iid("bg"),
                )
            ],
        )
        inc["break_glass_repeat"] = (
            "break_glass_repeated",
            [
                self.decision(
                    at(9 + 3 * i),
                    "emp-0251",
                    self.citizen(),
                    purpose={"code": "emergency", "break_glass": True, "justification_present": True},
                    event_id=iid("bgr"),
                )
                for i in range(3)
            ],
        )
        probe = synthetic_citizen_ref("probe-1")
        inc["probe"] = (
            "deny_then_permit_probing",
            [
                self.decision(
                    at(16), "emp-0260", probe, effect="deny", purpose={"code": "inquiry"}, event_id=iid("pr")
                ),
                self.decision(
                    at(16, 2), "emp-0260", probe, effect="deny", purpose={"code": "audit"}, event_id=iid("pr")
                ),
                self.decision(at(16, 5), "emp-0260", probe, event_id=iid("pr")),
            ],
        )
        victim = synthetic_citizen_ref("victim-1")
        inc["fraud"] = (
            "fraud_broker_read_then_account_change",
            [
                self.prov(at(10), "emp-0321", victim, event_id=iid("fraud")),
                self.prov(
                    at(15),
                    "emp-0321",
                    victim,
                    "pii.update",
                    fields=["bank_account"],
                    bank_account_ref=synthetic_bank_account_ref("mule-1"),
                    purpose={"code": "data_correction"},
                    event_id=iid("fraud"),
                ),
            ],
        )
        inc["mule"] = (
            "shared_bank_account",
            [
                self.prov(
                    at(10 + i),
                    "emp-0330",
                    synthetic_citizen_ref(f"mule-payee-{i}"),
                    "pii.update",
                    fields=["bank_account"],
                    bank_account_ref=synthetic_bank_account_ref("mule-2"),
                    purpose={"code": "bank_account_change", "case_id": "c"},
                    event_id=iid("mule"),
                )
                for i in range(3)
            ],
        )
        inc["takeover"] = (
            "risky_access_special_category",
            [
                self.decision(
                    at(11, 30),
                    "emp-0340",
                    self.citizen(),
                    classification="special",
                    dataset="occupational_injury",
                    signals={"impossible_travel": True},
                    event_id=iid("ato"),
                )
            ],
        )
        inc["exfil"] = (
            "mass_export_or_disclosure",
            [
                self.prov(
                    at(14) + timedelta(seconds=20 * i),
                    "emp-0350",
                    synthetic_citizen_ref(f"exfil-{i}"),
                    "pii.disclose",
                    recipient={"type": "agency", "id": "broker-unknown"},
                    purpose={"code": "inter_agency", "legal_basis": "SIA-art-9"},
                    event_id=iid("exfil"),
                )
                for i in range(70)
            ],
        )
        inc["decrypt_spike"] = (
            "key_decrypt_spike",
            [
                self.key(t, "emp-0360", "key.bulk_decrypt", count=12000, event_id=iid("dspike"))
                for t in _every(at(13), timedelta(minutes=5), 6)
            ],
        )
        inc["refused"] = (
            "key_decrypt_refused_burst",
            [
                self.key(
                    t, "pep-rogue", "key.decrypt_refused", count=None, reason="bad_signature", event_id=iid("refused")
                )
                for t in _every(at(17), timedelta(seconds=30), 8)
            ],
        )
        inc["retire"] = (
            "key_lifecycle_outside_change_window",
            [self.key(at(15), "admin-keys", "key.retire", count=None, event_id=iid("retire"))],
        )
        inc["emergency"] = (
            "emergency_policy_publish",
            [self.policy(at(18), "officer-3", "policy.emergency_publish", reason="hotfix", event_id=iid("emerg"))],
        )
        inc["verify"] = (
            "ledger_verification_failure",
            [self.policy(at(19), "auditor-1", "audit.verify_failed", reason="root_mismatch", event_id=iid("verify"))],
        )
        inc["first_seen"] = (
            "first_seen_key_principal",
            [self.key(at(20), "svc-unknown", "key.decrypt", count=5, event_id=iid("fs"))],
        )
        return inc

    # ---- early warning: what only baselines and the claims-fraud indicators see ----

    def weeks(self, n: int, start: datetime = WEEK_START, reads_per_hour: float = 6.0) -> list[Event]:
        """``n`` benign weeks from ``start`` (a Monday): the history baselines learn from."""
        return self.benign(days=7 * n, reads_per_hour=reads_per_hour, start=start)

    def early_warning_incidents(self, week: datetime) -> dict[str, tuple[str, dict[str, Any], list[Event]]]:
        """Incidents no fixed-threshold rule raises, planted in the week starting ``week`` (a Monday
        after at least four benign weeks): name -> (analytic, the alert's group keys it must raise,
        events). Event ids start 'ew-'. The slowly filled mule account also plants two account
        changes 32 and 15 days before its third (so they fall in the benign weeks: a 30-day window
        never holds all three)."""
        wed = week + timedelta(days=2)
        at = lambda h, m=0, day=wed: day + timedelta(hours=h, minutes=m)  # noqa: E731
        n = iter(range(10**6))
        iid = lambda name: f"ew-{name}-{next(n):05d}"  # noqa: E731
        day = (wed + TZ_OFFSET).date().isoformat()
        inc: dict[str, tuple[str, dict[str, Any], list[Event]]] = {}

        # 212 citizens in a working day, 26 an hour: under every hourly threshold, far above their usual.
        slow: list[Event] = []
        for i in range(212):
            when = at(9) + timedelta(seconds=i * 136)
            c = synthetic_citizen_ref(f"lowslow-{i}")
            dec = self.decision(when, "emp-0101", c, event_id=iid("slow"))
            slow += [dec, self.prov(when + timedelta(milliseconds=40), "emp-0101", c,
                                    decision_id=dec[1]["decision_id"], event_id=iid("slowp"))]
        inc["low_and_slow"] = ("behaviour_baseline", {"input.subject.id": "emp-0101", "local.date": day}, slow)

        # Early mornings and evenings, inside office hours as the off-hours rule defines them (07-21).
        odd: list[Event] = []
        for h in (7, 20):
            for i in range(12):
                c = self.citizen()
                when = at(h, 4 * i)
                dec = self.decision(when, "emp-0102", c, event_id=iid("odd"))
                odd += [dec, self.prov(when + timedelta(milliseconds=40), "emp-0102", c,
                                       decision_id=dec[1]["decision_id"], event_id=iid("oddp"))]
        inc["odd_hours"] = ("behaviour_baseline", {"input.subject.id": "emp-0102", "local.date": day}, odd)

        # A dataset this clerk and their peers never use.
        pension: list[Event] = []
        for i in range(30):
            c = self.citizen()
            when = at(10) + timedelta(minutes=9 * i)
            dec = self.decision(when, "emp-0103", c, dataset="national_pension", event_id=iid("ds"))
            pension += [dec, self.prov(when + timedelta(milliseconds=40), "emp-0103", c, dataset="national_pension",
                                       decision_id=dec[1]["decision_id"], event_id=iid("dsp"))]
        inc["new_dataset"] = ("behaviour_baseline", {"input.subject.id": "emp-0103", "local.date": day}, pension)

        # A bank-account change the evening before the nightly payment run pays that citizen.
        payee = synthetic_citizen_ref("payout-victim-1")
        inc["change_before_payout"] = ("claims_fraud_indicators",
                                       {"indicator": "account_change_before_payout", "citizen_ref": payee}, [
            self.prov(at(-7), "emp-0104", payee, "pii.update", fields=["bank_account"],
                      bank_account_ref=synthetic_bank_account_ref("new-account-1"),
                      purpose={"code": "bank_account_change", "case_id": "case-bc"}, event_id=iid("cbp")),
            self.prov(at(1, 30), "svc-benefits", payee, event_id=iid("cbpay"),
                      purpose={"code": "monthly_payment", "legal_basis": "LIA-art-20"}),
        ])

        # One mule account filled slowly, by three clerks, each change looking like a citizen's request.
        mule = synthetic_bank_account_ref("slow-mule")
        changes = [
            self.prov(at(11, day=wed - timedelta(days=back)), emp, synthetic_citizen_ref(f"slow-mule-{k}"),
                      "pii.update", fields=["bank_account"], bank_account_ref=mule,
                      purpose={"code": "bank_account_change", "case_id": f"case-sm{k}"}, event_id=iid("smule"))
            for k, (back, emp) in enumerate(((32, "emp-0105"), (15, "emp-0106"), (0, "emp-0107")))
        ]
        inc["slow_mule"] = ("claims_fraud_indicators",
                            {"indicator": "shared_payout_account", "bank_account_ref": mule}, changes)

        # One clinic behind 40 injury claims this week (it files a couple a month).
        clinic = synthetic_intermediary_ref("clinic-x")
        claims: list[Event] = []
        for k in range(3):  # its usual trickle in the weeks before
            claims += self._claim(week - timedelta(days=7 * k + 5, hours=-9), "emp-0108",
                                  synthetic_citizen_ref(f"clinic-past-{k}"), f"case-cx{k}", clinic, iid("claimp"))
        for i in range(40):
            when = week + timedelta(days=i % 5, hours=9 + (i // 5) % 8, minutes=7 * (i % 7))
            claims += self._claim(when, f"emp-{110 + i % 6:04d}", synthetic_citizen_ref(f"clinic-claim-{i}"),
                                  f"case-cc{i}", clinic, iid("claim"))
        inc["intermediary_share"] = ("claims_fraud_indicators",
                                     {"indicator": "intermediary_claim_share", "intermediary_ref": clinic}, claims)
        return inc


def to_jsonl(events: list[Event]) -> Iterator[str]:
    import json

    for kind, ev in events:
        yield json.dumps({"kind": kind, **ev}, separators=(",", ":")) + "\n"
