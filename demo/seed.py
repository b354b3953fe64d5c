"""``ztcp demo seed``: build the bureau, replay a simulated week through the gateway, run the SIEM,
and check the outcome (reads == ledger events; every planted incident caught).

Re-running: a home that already holds a seeded bureau (``directory.json`` or the demo's protected
tables) is refused unless ``force``; with ``force`` the bureau files and protected tables are rebuilt
and a new week is *appended* — the ledger, decision log and key audit are append-only and keep the
earlier week (that is their point), and the SIEM raises or extends alerts for the new one.

Safe while ``ztcp serve`` runs on the same home: every store is SQLite in WAL mode with busy timeouts
(ledger, decision log, signal history, key audit, SIEM store), ``bureau-data.json`` is replaced
atomically (the server reloads it), and the SIEM run uses the same cursors as the server's scheduler.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from demo import bureau as bureau_mod
from demo import exchange_night
from demo.clock import SimClock
from demo.errors import AlreadySeeded, DemoError
from demo.incidents import Incidents
from demo.traffic import Plan, World, local_midnight, run_steps
from policy import GOVERNED_REGISTERS

DAY = 86400.0
DEMO_PROXY = "10.255.0.1"  # the bureau's reverse proxy in front of the gateway, in the simulation
MAX_CITIZENS = 200_000
MAX_DAYS = 31


@dataclass(frozen=True)
class SeedOptions:
    citizens: int = 2000
    days: int = 7
    seed: int = 7
    force: bool = False
    end: float | None = None  # the simulated week ends here (default: now)

    def check(self) -> None:
        if not 50 <= self.citizens <= MAX_CITIZENS:
            raise DemoError(f"--citizens must be between 50 and {MAX_CITIZENS} (got {self.citizens})")
        if not 2 <= self.days <= MAX_DAYS:
            raise DemoError(f"--days must be between 2 and {MAX_DAYS} (got {self.days}); the incidents need "
                            "one full day inside the window")
        if self.seed < 0:
            raise DemoError("--seed must be a non-negative integer")


@dataclass
class IncidentResult:
    name: str
    title: str
    rule: str
    actor: str
    at: str
    alert_id: str | None
    caught_by: list[str] = field(default_factory=list)  # every rule whose alert has this incident's evidence
    # The citizen concerned (a victim, the snooped-on person), by reference only: what an auditor traces.
    citizen_ref: str | None = None


@dataclass
class SeedReport:
    home: str
    seed: int
    citizens: int
    staff: int
    offices: int
    cases: int
    claims: dict[str, int]
    rows: dict[str, int]
    window: tuple[str, str]
    requests: int
    responses: dict[str, int]
    decisions: dict[str, int]
    events: dict[str, int]
    reads: int
    read_events: int
    alerts_by_rule: dict[str, int]
    incidents: list[IncidentResult]
    seconds: dict[str, float]
    events_per_second: float  # ledger events recorded per second of gateway request time
    requests_per_second: float
    exchange: dict[str, Any] = field(default_factory=dict)  # the nightly exchange (demo/exchange_night.py)

    @property
    def missed(self) -> list[IncidentResult]:
        return [i for i in self.incidents if i.alert_id is None]

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        doc = asdict(self)
        doc["missed"] = [i.name for i in self.missed]
        doc["reads_equal_events"] = self.reads == self.read_events
        return doc


class Phases:
    """Progress display hooks: ``phase(name, total)`` returns an ``advance(n)`` callable."""

    def phase(self, name: str, total: int | None) -> Callable[[int], None]:
        return lambda n: None

    def done(self, name: str) -> None:
        pass


def already_seeded(home: Path, engine: Any) -> list[str]:
    import sqlalchemy as sa

    found = [bureau_mod.DIRECTORY_FILE] if (home / bureau_mod.DIRECTORY_FILE).exists() else []
    insp = sa.inspect(engine)
    return found + [t for t in bureau_mod.TABLES if insp.has_table(t)]


def incident_day(start: float, end: float) -> float:
    """Local midnight of the latest full working day inside [start, end).

    The incidents are a working day's events (warm-up reads, office hours, the evening export): a
    weekend day would change who is at work and what the risk score says, so the window's start is
    moved back to the latest working day when it holds none (``--days 2`` on a Sunday covers Friday).
    """
    d = datetime.fromtimestamp(end, bureau_mod_tz()).date()
    while True:
        midnight = local_midnight(d)
        if midnight + DAY <= end and d.weekday() < 5:
            return midnight
        d = d.fromordinal(d.toordinal() - 1)


def bureau_mod_tz():  # noqa: ANN201 - tiny indirection so traffic's zone is the one source
    from demo.traffic import TZ

    return TZ


def write_siem_config(path: Path, bureau: bureau_mod.Bureau) -> None:
    """Merge the bureau's lists into the SIEM config (keeping whatever else an analyst set there)."""
    import yaml

    doc: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            doc = loaded

    def merged(key: str, values: list[str]) -> list[str]:
        return sorted(set(doc.get(key) or []) | set(values))

    doc["protected_citizens"] = merged("protected_citizens", [c.citizen_ref for c in bureau.well_known()])
    doc["protected_record_custodians"] = merged("protected_record_custodians", bureau.custodians)
    doc["external_recipients_allowed"] = merged(
        "external_recipients_allowed",
        [a["id"] for a in bureau_mod.AGENCIES if a["status"] == "approved"] + list(bureau_mod.MYDATA_PARTIES))
    doc["batch_principals"] = merged("batch_principals", ["svc-*"])
    text = "# ztcp SIEM lists (written by `ztcp demo seed`; edit freely)\n" + yaml.safe_dump(doc, sort_keys=True)
    tmp = path.with_name(f".{path.name}.tmp")
    import os

    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def validate_bureau_data(doc: dict[str, Any]) -> None:
    import jsonschema

    from policy import DEFAULT_PACK_DIR

    schema = json.loads((Path(DEFAULT_PACK_DIR) / "schema" / "bureau.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    errors = list(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        raise DemoError(f"generated bureau data does not match bureau.schema.json at {where or '/'}")


def _ledger_events_after(ledger: Any, cursor: int) -> list[dict]:
    out: list[dict] = []
    cur: str | None = str(cursor)
    while True:
        batch, new = ledger.events_after(cur, 50_000)
        if not batch:
            return out
        out.extend(batch)
        cur = new


def _decisions_since(reader: Any, cursor: int, ours: set[str]) -> Counter:
    """Effects of our decisions logged after ``cursor`` (the decision log of the runtime, any driver)."""
    effects: Counter = Counter()
    while True:
        entries, new = reader.iter_since(cursor, 10_000)
        if not entries:
            return effects
        for e in entries:
            if e.get("decision_id") in ours:
                effects[(e.get("result") or {}).get("effect", "unknown")] += 1
        cursor = new


def publish_registers(rt: Any, bureau: Any, registers: dict[str, Any]) -> str:
    """Propose the registers as a revision (one of the bureau's security officers), approve it
    (another), publish it signed; the PDP follows at once."""
    import policy

    officers = [s.id for s in bureau.by_role("security_officer")][:2] or ["demo-officer-1", "demo-officer-2"]
    maker, checker = officers[0], officers[-1] if len(officers) > 1 else "demo-officer-2"
    store = rt.revision_store
    policy.ensure_initial_revision(store, rt.pack(), rt.keys.bundle_signing)
    base = store.active()
    pack = policy.with_registers(store.pack(base.revision) if base else rt.pack(), registers)
    existing = store.active()
    if existing is not None and existing.digest == pack.digest:
        return existing.revision  # a re-seed with the same registers: nothing to change
    rev = store.propose(pack, author=maker, message="demo: the bureau's registers (agreements, protected "
                                                    "citizens, datasets)")
    store.approve(rev.id, approver=checker, comment="checked against the register of agreements")
    store.publish(rev.id, actor=checker, signer=rt.keys.bundle_signing)
    if "point" in rt.__dict__:
        rt.reloader.check()
    return rev.id


def seed(settings: Any, options: SeedOptions, phases: Phases | None = None) -> SeedReport:
    """Everything ``ztcp demo seed`` does; returns the report (the CLI prints it and sets the exit code)."""
    import warnings

    with warnings.catch_warnings():  # Starlette nags about its httpx-based client on import: not for users
        warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
        from fastapi.testclient import TestClient

    from policy import DEFAULT_PACK_DIR
    from server.app import create_app
    from server.runtime import BUREAU_DATA_FILE, Runtime

    options.check()
    phases = phases or Phases()
    timings: dict[str, float] = {}
    end = options.end if options.end is not None else time.time()
    start = end - options.days * DAY
    day = incident_day(start, end)
    start = min(start, day)  # the window always holds one full working day for the incidents
    clock = SimClock(start)
    # The simulated week reaches the gateway as it would in the bureau: through its trusted proxy,
    # which passes on the workstation's device id, network zone and location.
    settings = settings.model_copy(update={"trusted_proxies": [*settings.trusted_proxies, DEMO_PROXY]})
    rt = Runtime(settings, clock=clock)
    home = rt.home
    try:
        seeded = already_seeded(home, rt.protected_engine)
        if seeded and not options.force:
            raise AlreadySeeded(f"{home} is already seeded ({', '.join(seeded)}); use --force to rebuild the "
                                "bureau and append another simulated week")
        t0 = time.perf_counter()
        rt.keys.ensure_all()  # what `ztcp serve` bootstraps: data KEK, blind-index and signing keys
        advance = phases.phase("building the bureau", options.citizens)
        today = datetime.fromtimestamp(end, UTC).date()
        bureau = bureau_mod.build_bureau(options.seed, options.citizens, today)
        incidents = Incidents(bureau, day, options.seed)
        incidents.plan()
        bureau_mod.assign_refs(bureau, rt.keys.blind_index)
        advance(options.citizens)
        phases.done("building the bureau")
        sample = json.loads((Path(DEFAULT_PACK_DIR) / "bureau" / "data.json").read_text())
        data = bureau_mod.bureau_data(bureau, sample)
        exchange_night.register_keys(home, data)  # agencies' receipt and encryption keys in their agreements
        validate_bureau_data(data)
        rows = bureau_mod.table_rows(bureau)
        advance = phases.phase("encrypting protected tables", sum(len(r) for r in rows.values()))
        counts = bureau_mod.write_tables(rt.protected_engine, rt.key_provider, bureau, force=options.force,
                                         progress=advance)
        phases.done("encrypting protected tables")
        bureau_mod.write_json(home / BUREAU_DATA_FILE, data)
        # The bureau's registers (agreements, protected citizens, datasets) change decisions, so they
        # reach the PDP only as a signed revision that one security officer proposed and another approved.
        publish_registers(rt, bureau, {k: data[k] for k in GOVERNED_REGISTERS})
        bureau_mod.write_json(home / bureau_mod.DIRECTORY_FILE,
                              bureau_mod.directory(bureau, datetime.fromtimestamp(end, UTC)))
        write_siem_config(home / "siem.yml", bureau)
        for member in bureau.staff:  # the workstations the bureau enrolled, with their posture
            rt.device_inventory.register(member.device_id, managed=member.managed, compliant=member.compliant,
                                         actor="demo")
        timings["bureau"] = time.perf_counter() - t0

        # -- the simulated week -------------------------------------------------------------------
        t0 = time.perf_counter()
        ledger_cursor = rt.ledger.size - 1
        decision_cursor = rt.decision_log.cursor()
        night = exchange_night.Night(rt, bureau, clock, start, end, options.seed)
        steps = Plan(bureau, start, end, options.seed).build() + incidents.steps() + night.steps()
        steps.sort()
        app = create_app(rt)
        with TestClient(app, client=(DEMO_PROXY, 443)) as client:
            world = World(rt, client, bureau, clock)
            run_steps(world, steps, phases.phase("simulated week through the gateway", len(steps)))
        phases.done("simulated week through the gateway")
        rt.decision_log.flush()
        timings["traffic"] = time.perf_counter() - t0
        exchanged = night.finish()  # the nightly exchange's overdue receipt, recorded as the window ends

        ours = world.tally.decision_ids
        events = [e for e in _ledger_events_after(rt.ledger, ledger_cursor) if e.get("decision_id") in ours]
        by_type = Counter(e["type"] for e in events)
        decisions = _decisions_since(rt.decision_log, decision_cursor, ours)
        # Every id a response named must be in the ledger, with the type the response claimed.
        ids = {e["event_id"]: e["type"] for e in events}
        for kind, got in world.tally.event_ids.items():
            lost = [i for i in got if ids.get(i) != kind]
            if lost:
                from demo.errors import ReadsUnrecorded

                raise ReadsUnrecorded(f"{len(lost)} {kind} response(s) have no matching ledger event")

        # -- detection -----------------------------------------------------------------------------
        t0 = time.perf_counter()
        phases.phase("SIEM rule pack over the live stores", None)
        alerts = run_siem(settings, since=start)
        phases.done("SIEM rule pack over the live stores")
        timings["siem"] = time.perf_counter() - t0
        results = match_incidents(incidents, alerts, _citizens_of(events))
        by_rule = Counter(a.rule_name for a in alerts)
        tally = world.tally
        report = SeedReport(
            home=str(home), seed=options.seed, citizens=len(bureau.citizens), staff=len(bureau.staff),
            offices=len(bureau.offices), cases=len(bureau.cases),
            claims=dict(Counter(c.kind for c in bureau.claims)), rows=counts,
            window=(_iso(start), _iso(end)), requests=tally.requests,
            responses={f"{op} {status}": n for (op, status), n in sorted(tally.responses.items())},
            decisions=dict(decisions), events=dict(by_type), reads=tally.ok("read"),
            read_events=by_type.get("pii.read", 0), alerts_by_rule=dict(sorted(by_rule.items())),
            incidents=results, seconds={k: round(v, 2) for k, v in timings.items()},
            events_per_second=round(len(events) / world.gateway_seconds, 1) if world.gateway_seconds else 0.0,
            requests_per_second=round(tally.requests / world.gateway_seconds, 1) if world.gateway_seconds else 0.0)
        report.seconds["gateway"] = round(world.gateway_seconds, 2)
        report.exchange = {**exchanged.as_dict(),
                           "overdue_alerts": [a.alert_id for a in alerts if a.rule_name == "exchange_receipt_overdue"]}
        return report
    finally:
        rt.close()


def run_siem(settings: Any, since: float | None = None) -> list[Any]:
    """Ingest the live stores and run the pack; all alerts.

    ``since`` (the simulated window's start) re-evaluates the window whatever the watermarks say: a
    running server's scheduler may have passed these events before this run's lists (siem.yml)
    reached it. Re-evaluation never duplicates an alert."""
    from server.siem import live_sources, make_engine

    engine = make_engine(settings)
    try:
        engine.ingest(live_sources(settings))
        engine.run(since=datetime.fromtimestamp(since, UTC) if since is not None else None)
        return engine.alerts.list()
    finally:
        engine.close()


def _citizens_of(events: list[dict]) -> dict[str, str]:
    """Event id and decision id → the citizen_ref the ledger event names."""
    out: dict[str, str] = {}
    for e in events:
        if e.get("citizen_ref"):
            for key in (e.get("event_id"), e.get("decision_id")):
                if key:
                    out.setdefault(key, e["citizen_ref"])
    return out


def match_incidents(incidents: Incidents, alerts: list[Any],
                    citizens: dict[str, str] | None = None) -> list[IncidentResult]:
    out = []
    for inc in incidents.items.values():
        catching = [a for a in alerts if inc.ids & set(a.evidence)
                    or inc.actor in {str(v) for v in a.group_keys.values()}]
        own = [a for a in catching if a.rule_name == inc.rule]
        # The alert's own grouping names the citizen when the rule groups by one; else the first
        # citizen the incident's recorded events name (in the order the ledger holds them).
        ref = next((a.group_keys["citizen_ref"] for a in own if a.group_keys.get("citizen_ref")), None)
        if ref is None and citizens:
            ref = next((citizens[i] for i in citizens if i in inc.ids), None)
        out.append(IncidentResult(name=inc.name, title=inc.title, rule=inc.rule, actor=inc.actor,
                                  at=_iso(inc.at), alert_id=own[0].alert_id if own else None,
                                  caught_by=sorted({a.rule_name for a in catching}), citizen_ref=ref))
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
