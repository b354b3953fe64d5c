"""`ztcp demo early-warning`: behavioural baselines and claims-fraud indicators on a simulated bureau,
and the SOC's email for the week's critical alert, delivered to a real SMTP server (aiosmtpd).

Four benign weeks are learnt from (the first two only build the baselines), then a week with the
planted cases of :meth:`demo.siem_week.Traffic.early_warning_incidents` is run a day at a time as
the scheduler would. The report says which planted cases were caught (with each alert's own
explanation, e.g. "236 citizens today; usual 14–20; peers 12–20"), and the false-positive rate on
the benign weeks: early-warning alerts per employee-day scored after the learning weeks.

Everything runs in a scratch directory of its own (a SIEM store and a delivery outbox); nothing in
``ZTCP_HOME`` is touched. The SMTP server listens on loopback only, for the demo's duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from demo.siem_week import WEEK_START, Traffic, bureau_config

EARLY = ("behaviour_baseline", "claims_fraud_indicators")
SOC_MAILBOX = "soc@bureau.example"


@dataclass
class EarlyWarningReport:
    benign_events: int
    benign_alerts: int  # early-warning alerts in the four benign weeks
    benign_after_learning: int  # of those, after the two learning weeks
    employee_days_scored: int
    planted: dict[str, str]  # planted case -> the rule that should catch it
    caught: dict[str, str]  # planted case -> the caught alert's explanation
    other_alerts: int  # early-warning alerts of the incident week that are no planted case
    email: dict[str, str] = field(default_factory=dict)  # from, to, subject, body of the critical alert
    seconds: float = 0.0

    @property
    def false_positive_rate(self) -> float:
        """Early-warning alerts per 1,000 employee-days scored on the benign weeks (after learning)."""
        return 1000.0 * self.benign_after_learning / max(1, self.employee_days_scored)

    def as_dict(self) -> dict[str, Any]:
        return {"benign_events": self.benign_events, "benign_alerts": self.benign_alerts,
                "benign_after_learning": self.benign_after_learning,
                "employee_days_scored": self.employee_days_scored,
                "false_positives_per_1000_employee_days": round(self.false_positive_rate, 2),
                "planted": len(self.planted), "caught": len(self.caught),
                "explanations": self.caught, "missed": sorted(set(self.planted) - set(self.caught)),
                "other_alerts": self.other_alerts, "email": self.email, "seconds": round(self.seconds, 1)}


def _when(event: tuple[str, dict[str, Any]]) -> datetime:
    return datetime.fromisoformat((event[1].get("timestamp") or event[1]["time"]).replace("Z", "+00:00"))


class _Mailbox:
    """aiosmtpd on 127.0.0.1 (a free port), keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def __enter__(self) -> _Mailbox:
        import socket

        from aiosmtpd.controller import Controller

        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: ANN401, N802
                outer.messages.append(envelope.original_content)
                return "250 OK"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def wait(self, n: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)


def _text(msg: Message) -> str:
    part = msg.get_body(("plain",)) if hasattr(msg, "get_body") else None
    payload = (part or msg).get_payload(decode=True)
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)


def run_early_warning(workdir: Path, *, seed: int = 11, employees: int = 150, reads_per_hour: float = 4.0,
                      say: Callable[[str], None] = lambda _: None) -> EarlyWarningReport:
    """The whole demo in ``workdir`` (created; its SIEM store and outbox are left for inspection)."""
    from email import policy

    from siem_rules import Engine, RulePack, connect
    from siem_rules.delivery import Delivery, DeliveryConfig, EmailChannel, connect_outbox

    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    traffic = Traffic(seed=seed, employees=employees)
    engine = Engine(connect(workdir / "siem.db"), RulePack(bureau_config()))
    incident_week = WEEK_START + timedelta(days=28)
    planted = traffic.early_warning_incidents(incident_week)
    planted_events = [e for _, _, evs in planted.values() for e in evs]
    say("learning: four benign weeks of the bureau's traffic")
    history = traffic.weeks(4, reads_per_hour=reads_per_hour) + [e for e in planted_events if _when(e) < incident_week]
    history.sort(key=_when)
    engine.store.ingest(history, check=False)
    engine.run()
    benign = [a for a in engine.alerts.list() if a.rule_name in EARLY]
    learning_end = WEEK_START + timedelta(days=14)
    scored = int(engine.conn.execute("SELECT COUNT(*) FROM siem_baseline_day WHERE day >= ?",
                                     ((learning_end + timedelta(hours=8)).date().isoformat(),)).fetchone()[0])
    after_learning = [a for a in benign
                      if datetime.fromisoformat(a.window_start.replace("Z", "+00:00")) >= learning_end]

    say("the incident week, a day at a time, as the scheduler runs it")
    week = traffic.weeks(1, start=incident_week, reads_per_hour=reads_per_hour)
    week += [e for e in planted_events if _when(e) >= incident_week]
    week += traffic.incidents(start=incident_week)["fraud"][1]  # the week's critical alert
    week.sort(key=_when)
    for day in range(7):
        lo, hi = incident_week + timedelta(days=day), incident_week + timedelta(days=day + 1)
        engine.store.ingest([e for e in week if lo <= _when(e) < hi], check=False)
        engine.run()
    seen = {a.alert_id for a in benign}
    new = [a for a in engine.alerts.list() if a.rule_name in EARLY and a.alert_id not in seen]
    caught: dict[str, str] = {}
    matched: set[str] = set()
    for name, (rule, group, _) in planted.items():
        hit = [a for a in new if a.rule_name == rule and all(a.group_keys.get(k) == v for k, v in group.items())]
        if hit:
            caught[name] = hit[0].explanation or ""
            matched.add(hit[0].alert_id)
    engine.conn.close()

    say("delivery: the critical alert by email to the SOC (aiosmtpd on loopback)")
    email: dict[str, str] = {}
    with _Mailbox() as box:
        channel = EmailChannel(f"smtp://127.0.0.1:{box.port}", [SOC_MAILBOX], "ztcp@bureau.example")
        delivery = Delivery(connect_outbox(workdir / "delivery.db"), connect(workdir / "siem.db"),
                            DeliveryConfig("https://ztcp.bureau.example/console", email=channel,
                                           min_level="critical"))
        delivery.tick()
        got = box.wait(1)
    if got:
        msg = message_from_bytes(got[0], policy=policy.default)
        email = {"from": str(msg["From"]), "to": str(msg["To"]), "subject": " ".join(str(msg["Subject"]).split()),
                 "body": _text(msg)}
    return EarlyWarningReport(len(history), len(benign), len(after_learning), scored,
                              {k: v[0] for k, v in planted.items()}, caught,
                              len([a for a in new if a.alert_id not in matched]), email,
                              time.monotonic() - started)
