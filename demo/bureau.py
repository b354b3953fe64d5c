"""A synthetic social-insurance bureau: offices, staff, insured people, claims, cases, agreements,
consents, well-known (protected) people — and writing it into a ztcp home.

:func:`build_bureau` is pure and deterministic for a seed. :func:`write_bureau` puts it in place:

* ``ZTCP_HOME/bureau-data.json`` — ``data.bureau`` for the policy pack (cases, agreements, consents,
  protected citizens, dataset register), valid against ``policy/rego/schema/bureau.schema.json``;
  the decision point reloads it when it changes (a running ``ztcp serve`` too).
* the protected tables ``insured_persons``, ``claims`` and ``injury_claims`` in the protected
  database, written through keymgmt's :class:`~keymgmt.EncryptedTable`: personal fields are
  encrypted before they reach the database (never stored in plaintext, not even briefly), with a
  blind index on ``national_id`` for exact searches.
* ``ZTCP_HOME/directory.json`` — the staff directory, for the console's development sign-in::

      {"version": 1, "seed": 7, "generated_at": "2026-11-22T06:00:00Z",
       "offices": [{"id": "taipei-01", "name": "臺北市辦事處", "name_en": "Taipei City Office"}, ...],
       "staff": [{"id": "emp-0001", "display_name": "…", "office": "taipei-01",
                  "roles": ["case_officer"], "auth_method": "fido2", "mfa": true,
                  "device": {"id": "dev-taipei-01-0001", "managed": true, "compliant": true}}, ...]}

  Staff only: no citizen, no national ID, no citizen's name (staff display names are drawn apart
  from the citizens' names).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import sqlalchemy as sa

from demo.people import PeopleFactory, Person

DIRECTORY_FILE = "directory.json"
SIEM_CONFIG_FILE = "siem.yml"


@dataclass(frozen=True)
class Office:
    id: str
    name: str
    name_en: str
    lat: float
    lon: float


# The bureau's local offices (one per city/county, two in the largest), with their coordinates.
OFFICES: tuple[Office, ...] = (
    Office("taipei-01", "臺北市辦事處", "Taipei City Office", 25.0375, 121.5637),
    Office("taipei-02", "臺北市第二辦事處", "Taipei City Office 2", 25.0629, 121.5254),
    Office("newtaipei-01", "新北市辦事處", "New Taipei City Office", 25.0120, 121.4650),
    Office("newtaipei-02", "新北市三重辦事處", "New Taipei Sanchong Office", 25.0615, 121.4870),
    Office("keelung-01", "基隆市辦事處", "Keelung City Office", 25.1283, 121.7419),
    Office("taoyuan-01", "桃園市辦事處", "Taoyuan City Office", 24.9936, 121.3010),
    Office("hsinchu-01", "新竹市辦事處", "Hsinchu City Office", 24.8138, 120.9675),
    Office("hsinchuco-01", "新竹縣辦事處", "Hsinchu County Office", 24.8270, 121.0129),
    Office("miaoli-01", "苗栗縣辦事處", "Miaoli County Office", 24.5602, 120.8214),
    Office("taichung-01", "臺中市辦事處", "Taichung City Office", 24.1477, 120.6736),
    Office("taichung-02", "臺中市豐原辦事處", "Taichung Fengyuan Office", 24.2522, 120.7228),
    Office("changhua-01", "彰化縣辦事處", "Changhua County Office", 24.0809, 120.5385),
    Office("nantou-01", "南投縣辦事處", "Nantou County Office", 23.9157, 120.6639),
    Office("yunlin-01", "雲林縣辦事處", "Yunlin County Office", 23.7092, 120.4313),
    Office("chiayi-01", "嘉義市辦事處", "Chiayi City Office", 23.4801, 120.4491),
    Office("chiayico-01", "嘉義縣辦事處", "Chiayi County Office", 23.4518, 120.2555),
    Office("tainan-01", "臺南市辦事處", "Tainan City Office", 22.9999, 120.2270),
    Office("kaohsiung-01", "高雄市辦事處", "Kaohsiung City Office", 22.6273, 120.3014),
    Office("kaohsiung-02", "高雄市岡山辦事處", "Kaohsiung Gangshan Office", 22.7968, 120.2958),
    Office("pingtung-01", "屏東縣辦事處", "Pingtung County Office", 22.6690, 120.4862),
    Office("yilan-01", "宜蘭縣辦事處", "Yilan County Office", 24.7570, 121.7530),
    Office("hualien-01", "花蓮縣辦事處", "Hualien County Office", 23.9872, 121.6016),
    Office("taitung-01", "臺東縣辦事處", "Taitung County Office", 22.7583, 121.1444),
    Office("penghu-01", "澎湖縣辦事處", "Penghu County Office", 23.5655, 119.5793),
)
# How many staff hold each role (≈500). Supervisors: one per office plus a few.
ROLE_COUNTS = {"counter_staff": 150, "case_officer": 150, "reviewer": 48, "supervisor": 30, "call_center": 60,
               "auditor": 20, "it_admin": 20, "key_custodian": 6, "security_officer": 10, "soc_analyst": 6}
AUTH_METHOD = {"call_center": "otp", "it_admin": "otp"}  # everyone else signs in with FIDO2 keys

CLAIM_KINDS = ("maternity", "occupational_injury", "sickness", "old_age", "disability", "death")
CLAIM_PURPOSE = {"maternity": "maternity_benefit", "occupational_injury": "injury_claim",
                 "sickness": "sickness_benefit", "old_age": "pension_review", "disability": "disability_review",
                 "death": "survivor_benefit"}
CLAIM_AMOUNT = {"maternity": (60000, 140000), "occupational_injury": (20000, 300000), "sickness": (5000, 60000),
                "old_age": (8000, 30000), "disability": (100000, 1500000), "death": (150000, 1300000)}
INJURIES = ("左手腕骨折", "腰椎挫傷", "右手指切斷傷", "職業性聽力損失", "頭部外傷", "右膝十字韌帶撕裂", "化學性灼傷",
            "肩關節脫臼")
DIAGNOSES = ("S62.1", "S33.5", "S68.1", "H83.3", "S06.0", "S83.5", "T26.5", "S43.0")

class Agency(TypedDict):
    id: str
    name: str
    fields: list[str]
    legal_basis: str
    status: str  # approved | suspended


AGENCIES: tuple[Agency, ...] = (
    {"id": "agency-tax", "name": "財政部財政資訊中心",
     "fields": ["name", "address", "insurance_type", "insured_salary"], "legal_basis": "TCA-Art-30",
     "status": "approved"},
    {"id": "agency-nhia", "name": "衛生福利部中央健康保險署", "fields": ["name", "insurance_type", "employer"],
     "legal_basis": "NHIA-Art-79", "status": "approved"},
    {"id": "agency-ris", "name": "內政部戶政司", "fields": ["name", "address"], "legal_basis": "HRA-Art-65",
     "status": "approved"},
    {"id": "agency-mol", "name": "勞動部勞動力發展署", "fields": ["employer", "insured_salary", "insurance_type"],
     "legal_basis": "ESA-Art-43", "status": "approved"},
    {"id": "agency-legacy", "name": "舊制交換平臺", "fields": ["name"], "legal_basis": "OLD-2019",
     "status": "suspended"},
)
MYDATA_PARTIES = ("mydata-bank-ctbc", "mydata-bank-esun", "mydata-bank-cathay", "mydata-insurer-fubon")
MYDATA_FIELDS = ["name", "insurance_type", "insured_salary", "employer"]

# The protected tables: (columns encrypted, plaintext columns, blind-indexed columns).
TABLES: dict[str, dict[str, Any]] = {
    "insured_persons": {
        "classification": "personal",
        "protected": ("name", "national_id", "birth_date", "address", "phone", "bank_account", "insured_salary"),
        "plain": ("employer", "insurance_type", "office"),
        "blind_index": ("national_id",),
    },
    "claims": {
        "classification": "personal",
        "protected": ("name", "national_id", "bank_account", "payment_amount"),
        "plain": ("claim_id", "claim_type", "claim_status", "filed_date", "payment_date", "office"),
        "blind_index": ("national_id",),
    },
    "injury_claims": {
        "classification": "special",
        "protected": ("name", "injury_type", "diagnosis", "disability_grade"),
        "plain": ("claim_id", "employer", "accident_date"),
        "blind_index": (),
    },
}


@dataclass
class Staff:
    id: str
    display_name: str
    office: str
    roles: list[str]
    auth_method: str
    device_id: str
    managed: bool = True
    compliant: bool = True

    @property
    def role(self) -> str:
        return self.roles[0]


@dataclass
class Citizen:
    index: int  # = insured_persons.id
    person: Person
    office: str
    citizen_ref: str = ""
    well_known: bool = False


@dataclass
class Claim:
    id: int
    claim_id: str
    citizen: int
    kind: str
    status: str
    filed: date
    amount: int
    case_id: str
    injury_id: int | None = None


@dataclass
class Case:
    id: str
    citizen: int
    office: str
    purposes: list[str]
    assignees: list[str]
    status: str = "open"
    kind: str = "benefit"  # benefit | counter | inquiry | vip


@dataclass
class Bureau:
    seed: int
    today: date
    offices: tuple[Office, ...]
    staff: list[Staff]
    citizens: list[Citizen]
    claims: list[Claim]
    cases: dict[str, Case]
    consents: dict[str, dict[str, Any]] = field(default_factory=dict)
    custodians: list[str] = field(default_factory=list)

    def office(self, office_id: str) -> Office:
        return next(o for o in self.offices if o.id == office_id)

    def by_role(self, role: str) -> list[Staff]:
        return [s for s in self.staff if role in s.roles]

    def well_known(self) -> list[Citizen]:
        return [c for c in self.citizens if c.well_known]


def build_bureau(seed: int, citizens: int, today: date) -> Bureau:
    """The whole bureau for a seed, without citizen_refs (they need the home's blind-index key)."""
    if citizens < 50:
        raise ValueError("at least 50 citizens are needed for a bureau")
    rng = random.Random(seed * 7919 + 1)
    people = PeopleFactory(seed)
    persons = [people.person(today=today) for _ in range(citizens)]
    citizen_names = {p.name for p in persons}

    staff: list[Staff] = []
    roles = [r for r, n in ROLE_COUNTS.items() for _ in range(n)]
    for i, role in enumerate(roles):
        office = OFFICES[i % len(OFFICES)]
        if role in ("auditor", "it_admin", "key_custodian", "security_officer", "soc_analyst"):
            office = OFFICES[0]  # head-office functions sit in Taipei
        n = i + 1
        name = people.faker.name()
        while name in citizen_names:  # staff names must never be mistaken for a citizen's
            name = people.faker.name()
        sid = f"emp-{n:04d}"
        odd_device = rng.random() < 0.03  # a few laptops out of patch compliance
        staff.append(Staff(id=sid, display_name=name, office=office.id, roles=[role],
                           auth_method=AUTH_METHOD.get(role, "fido2"), device_id=f"dev-{office.id}-{n:04d}",
                           compliant=not odd_device))
    # Supervisors: make sure each office has one.
    sups = [s for s in staff if s.role == "supervisor"]
    for office, sup in zip(OFFICES, sups, strict=False):
        sup.office = office.id
        sup.device_id = f"dev-{office.id}-{sup.id[4:]}"

    cits = [Citizen(index=i + 1, person=p, office=OFFICES[rng.randrange(len(OFFICES))].id)
            for i, p in enumerate(persons)]
    for c in rng.sample(cits, 3):
        c.well_known = True

    officers = {o.id: [s for s in staff if s.office == o.id and s.role == "case_officer"] for o in OFFICES}
    reviewers = {o.id: [s for s in staff if s.office == o.id and s.role == "reviewer"] for o in OFFICES}
    counters = {o.id: [s for s in staff if s.office == o.id and s.role == "counter_staff"] for o in OFFICES}
    callers = [s for s in staff if s.role == "call_center"]
    custodians = [officers[OFFICES[0].id][0].id, officers[OFFICES[1].id][0].id]

    cases: dict[str, Case] = {}
    claims: list[Claim] = []
    injury_n = 0

    def new_case(citizen: Citizen, purposes: list[str], assignees: list[str], kind: str, status: str) -> Case:
        cid = f"C-{today.year}-{len(cases) + 1:06d}"
        case = Case(cid, citizen.index, citizen.office, purposes, list(dict.fromkeys(assignees)), status, kind)
        cases[cid] = case
        return case

    for c in cits:
        age = (today - c.person.birth_date).days // 365
        kinds = []
        if rng.random() < 0.55:
            kinds.append(_claim_kind(rng, c.person.sex, age))
        if rng.random() < 0.12:
            kinds.append(_claim_kind(rng, c.person.sex, age))
        for kind in kinds:
            if c.well_known:
                assignees = [custodians[0]]
            else:
                team = officers[c.office] or officers[OFFICES[0].id]
                assignees = [rng.choice(team).id]
                if reviewers[c.office] and rng.random() < 0.5:
                    assignees.append(rng.choice(reviewers[c.office]).id)
            status = "open" if rng.random() < 0.75 else "closed"
            case = new_case(c, [CLAIM_PURPOSE[kind], "benefit_review", "inter_agency_exchange", "mydata_service"],
                            assignees, "vip" if c.well_known else "benefit", status)
            lo, hi = CLAIM_AMOUNT[kind]
            filed = today - timedelta(days=rng.randrange(3, 400))
            injury_id = None
            if kind in ("occupational_injury", "disability"):
                injury_n += 1
                injury_id = injury_n
            claims.append(Claim(len(claims) + 1, f"CL-{today.year}-{len(claims) + 1:07d}", c.index, kind,
                                "paid" if status == "closed" else rng.choice(["received", "under_review", "approved"]),
                                filed, rng.randrange(lo, hi, 10), case.id, injury_id))
        if not c.well_known and rng.random() < 0.06:  # counter visits: a change the citizen asked for
            team = counters[c.office] or counters[OFFICES[0].id]
            new_case(c, ["bank_account_change", "address_change", "benefit_review"], [rng.choice(team).id],
                     "counter", "open")
        if not c.well_known and rng.random() < 0.05 and callers:  # phone inquiries
            new_case(c, ["inquiry"], [rng.choice(callers).id], "inquiry", "open")

    consents: dict[str, dict[str, Any]] = {}
    expires = datetime.combine(today + timedelta(days=365), datetime.min.time(), UTC)
    for c in cits:
        if not c.well_known and rng.random() < 0.08:
            consents[f"CNS-{len(consents) + 1:06d}"] = {
                "party": rng.choice(MYDATA_PARTIES), "citizen": c.index, "dataset": "insured_persons",
                "fields": list(MYDATA_FIELDS), "expires": expires.isoformat().replace("+00:00", "Z"),
                "revoked": rng.random() < 0.05}
    return Bureau(seed=seed, today=today, offices=OFFICES, staff=staff, citizens=cits, claims=claims, cases=cases,
                  consents=consents, custodians=custodians)


def _claim_kind(rng: random.Random, sex: str, age: int) -> str:
    if age >= 65:
        return rng.choice(["old_age", "old_age", "sickness", "death", "disability"])
    choices = ["sickness", "sickness", "occupational_injury", "disability", "death"]
    if sex == "F" and 20 <= age <= 45:
        choices += ["maternity", "maternity"]
    if age >= 60:
        choices.append("old_age")
    return rng.choice(choices)


# -- writing ---------------------------------------------------------------------------------------


def assign_refs(bureau: Bureau, blind_index_key: bytes) -> None:
    import contracts

    for c in bureau.citizens:
        c.citizen_ref = contracts.citizen_ref(c.person.national_id, blind_index_key)


def bureau_data(bureau: Bureau, sample: dict[str, Any]) -> dict[str, Any]:
    """``data.bureau`` (schema-valid), keeping the sample pack's internal datasets register."""
    refs = {c.index: c.citizen_ref for c in bureau.citizens}
    expires = datetime.combine(bureau.today + timedelta(days=540), datetime.min.time(), UTC)
    agreements = {a["id"]: [{"id": f"DSA-{bureau.today.year}-{i + 1:03d}", "dataset": "insured_persons",
                             "fields": a["fields"], "legal_basis": a["legal_basis"],
                             "expires": expires.isoformat().replace("+00:00", "Z"), "status": a["status"]}]
                  for i, a in enumerate(AGENCIES)}
    datasets = {k: v for k, v in sample.get("datasets", {}).items() if k not in TABLES}
    for name, t in TABLES.items():
        datasets[name] = {"classification": t["classification"], "fields": [*t["protected"], *t["plain"]]}
    return {
        "cases": {cid: {"assignees": c.assignees, "citizen_ref": refs[c.citizen], "purposes": c.purposes,
                        "status": c.status, "sealed": False, "org_unit": c.office}
                  for cid, c in bureau.cases.items()},
        "agreements": agreements,
        "consents": {cid: {"party": c["party"], "citizen_ref": refs[c["citizen"]], "dataset": c["dataset"],
                           "fields": c["fields"], "expires": c["expires"], "revoked": c["revoked"]}
                     for cid, c in bureau.consents.items()},
        "protected_citizens": sorted(c.citizen_ref for c in bureau.well_known()),
        "datasets": datasets,
    }


def directory(bureau: Bureau, generated_at: datetime) -> dict[str, Any]:
    return {
        "version": 1, "seed": bureau.seed, "generated_at": generated_at.isoformat().replace("+00:00", "Z"),
        "offices": [{"id": o.id, "name": o.name, "name_en": o.name_en} for o in bureau.offices],
        "staff": [{"id": s.id, "display_name": s.display_name, "office": s.office, "roles": s.roles,
                   "auth_method": s.auth_method, "mfa": True,
                   "device": {"id": s.device_id, "managed": s.managed, "compliant": s.compliant}}
                  for s in bureau.staff],
    }


def write_json(path: Path, doc: Any) -> None:
    """Atomic replace (a running server reloads bureau-data.json on change: never a half file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def table_rows(bureau: Bureau) -> dict[str, list[dict[str, Any]]]:
    by_index = {c.index: c for c in bureau.citizens}
    rng = random.Random(bureau.seed * 31 + 5)
    rows: dict[str, list[dict[str, Any]]] = {"insured_persons": [], "claims": [], "injury_claims": []}
    for c in bureau.citizens:
        p = c.person
        rows["insured_persons"].append({
            "id": c.index, "citizen_ref": c.citizen_ref, "name": p.name, "national_id": p.national_id,
            "birth_date": p.birth_date.isoformat(), "address": p.address, "phone": p.phone,
            "bank_account": p.bank_account, "insured_salary": str(p.insured_salary), "employer": p.employer,
            "insurance_type": p.insurance_type, "office": c.office})
    for cl in bureau.claims:
        c = by_index[cl.citizen]
        paid = cl.filed + timedelta(days=rng.randrange(10, 60)) if cl.status == "paid" else None
        rows["claims"].append({
            "id": cl.id, "citizen_ref": c.citizen_ref, "claim_id": cl.claim_id, "claim_type": cl.kind,
            "claim_status": cl.status, "filed_date": cl.filed.isoformat(),
            "payment_date": paid.isoformat() if paid else None, "office": c.office, "name": c.person.name,
            "national_id": c.person.national_id, "bank_account": c.person.bank_account,
            "payment_amount": str(cl.amount)})
        if cl.injury_id is not None:
            k = rng.randrange(len(INJURIES))
            rows["injury_claims"].append({
                "id": cl.injury_id, "citizen_ref": c.citizen_ref, "claim_id": cl.claim_id, "name": c.person.name,
                "injury_type": INJURIES[k], "diagnosis": DIAGNOSES[k], "employer": c.person.employer,
                "accident_date": (cl.filed - timedelta(days=rng.randrange(1, 30))).isoformat(),
                "disability_grade": str(rng.randrange(1, 16)) if cl.kind == "disability" else None})
    return rows


def write_tables(engine: sa.Engine, key_provider: Any, bureau: Bureau, *, force: bool,
                 progress: Any = None) -> dict[str, int]:
    """Create the protected tables and insert every row encrypted (keymgmt envelope + blind index)."""
    import keymgmt

    insp = sa.inspect(engine)
    existing = [t for t in TABLES if insp.has_table(t)]
    if existing and not force:
        from demo.errors import AlreadySeeded

        raise AlreadySeeded(f"the protected database already has {', '.join(existing)}")
    md = sa.MetaData()
    counts: dict[str, int] = {}
    rows = table_rows(bureau)
    envelope = keymgmt.Envelope(key_provider, engine)
    for name, t in TABLES.items():
        if name in existing:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP TABLE "{name}"'))
        cols: list[sa.Column[Any]] = [sa.Column("id", sa.Integer, primary_key=True),
                                      sa.Column("citizen_ref", sa.String(80), index=True)]
        cols += [sa.Column(c, sa.Text) for c in (*t["protected"], *t["plain"])]
        table = sa.Table(name, md, *cols)
        table.create(engine)
        spec = keymgmt.TableSpec(table=name, pk="id", columns=tuple(t["protected"]),
                                 blind_index=tuple(t["blind_index"]), citizen_ref_column="citizen_ref")
        blind = keymgmt.BlindIndexKeys(key_provider) if t["blind_index"] else None
        et = keymgmt.EncryptedTable(engine, spec, envelope, blind)
        et.prepare()
        batch = rows[name]
        for i in range(0, len(batch), 500):
            et.insert_many(batch[i:i + 500])
            if progress is not None:
                progress(len(batch[i:i + 500]))
        counts[name] = len(batch)
    return counts
