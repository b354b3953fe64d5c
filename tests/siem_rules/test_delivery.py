"""Delivery against real receivers: Debian's rsyslogd (TCP, UDP, TLS via its gtls driver), aiosmtpd
(STARTTLS, AUTH), a small HTTP server for webhooks. Backlog, order, de-duplication across restarts,
backoff, escalation, and what a notification may say."""

from __future__ import annotations

import json
import sys
import time
from email import message_from_bytes
from pathlib import Path

import pytest

from demo.siem_week import Traffic, bureau_config
from siem_rules import Engine, RulePack, connect, triage
from siem_rules.delivery import (
    DecisionFeed,
    Delivery,
    DeliveryConfig,
    EmailChannel,
    SyslogTarget,
    WebhookChannel,
    connect_outbox,
    verify_webhook,
)
from siem_rules.delivery.formats import rfc5424

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.receivers import GTLS_MODULE, Rsyslog, Smtp, WebhookReceiver, free_port, make_pki  # noqa: E402

CONSOLE = "https://ztcp.bureau.test/console"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def siem(tmp_path: Path) -> Engine:
    """A SIEM store with three alerts: the fraud broker (critical), a protected record (high) and a
    read without purpose (medium)."""
    t = Traffic(seed=3, employees=2)
    inc = t.incidents()
    engine = Engine(connect(tmp_path / "siem.db"), RulePack(bureau_config()))
    engine.store.ingest([e for name in ("fraud", "vip", "no_purpose") for e in inc[name][1]])
    engine.run()
    assert {a.level for a in engine.alerts.list()} >= {"critical", "high", "medium"}
    return engine


def _delivery(tmp_path: Path, cfg: DeliveryConfig, clock: Clock | None = None, decisions=None,  # noqa: ANN001
              outbox: str = "delivery.db") -> Delivery:
    return Delivery(connect_outbox(tmp_path / outbox), connect(tmp_path / "siem.db"), cfg, decisions,
                    clock=clock or Clock())


# ---- syslog ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ecs", "cef"])
def test_alerts_reach_rsyslog_over_tcp_and_udp_in_rfc5424(tmp_path: Path, siem: Engine, fmt: str) -> None:
    with Rsyslog(tmp_path / "rs") as rs:
        for url in (f"tcp://127.0.0.1:{rs.tcp_port}", f"udp://127.0.0.1:{rs.udp_port}"):
            out = tmp_path / url[:3]
            out.mkdir()
            d = Delivery(connect_outbox(out / "delivery.db"), connect(tmp_path / "siem.db"),
                         DeliveryConfig(CONSOLE, syslog=SyslogTarget(url), syslog_format=fmt), clock=Clock())
            assert d.tick()["syslog"] == len(siem.alerts.list())
        lines = rs.wait_for(2 * len(siem.alerts.list()))
    alerts = {a.alert_id: a for a in siem.alerts.list()}
    assert len(lines) == 2 * len(alerts)
    for line in lines:
        # <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG, facility local0 (16), severity by level
        head, ts, _host, app, _procid, msgid, sd, msg = line.split(" ", 7)
        pri, version = head[: head.index(">") + 1], head[head.index(">") + 1:]
        assert version == "1" and app == "ztcp" and msgid == "alert" and sd == "-" and ts.endswith("Z")
        if fmt == "ecs":
            doc = json.loads(msg)
            alert = alerts[doc["event"]["id"]]
            assert doc["rule"]["name"] == alert.rule_name and doc["event"]["kind"] == "alert"
            assert doc["event"]["url"] == f"{CONSOLE}/alerts/{alert.alert_id}"
        else:
            assert msg.startswith("CEF:0|ztcp|ztcp|")
            alert = next(a for a in alerts.values() if f"externalId={a.alert_id}" in msg)
        severity = {"critical": 2, "high": 3, "medium": 4}[alert.level]
        assert pri == f"<{16 * 8 + severity}>"


def test_octet_counting_keeps_a_message_with_newlines_whole(tmp_path: Path) -> None:
    with Rsyslog(tmp_path / "rs") as rs:
        messages = [rfc5424(f"CEF:0|ztcp|ztcp|0.1.0|x|y|1|msg=line one\nline two {i}".encode(), severity=6)
                    for i in range(50)]
        SyslogTarget(f"tcp://127.0.0.1:{rs.tcp_port}").send(messages)
        lines = rs.wait_for(50)
    assert len(lines) == 50  # rsyslog escapes the control character (#012) inside one message
    assert all("line one#012line two" in line for line in lines)
    assert [int(line.rsplit(" ", 1)[1]) for line in lines] == list(range(50))  # in order


@pytest.mark.skipif(GTLS_MODULE is None, reason="rsyslog's TLS driver (Debian rsyslog-gnutls) is not installed")
def test_tls_to_rsyslog_with_a_ca_made_here_and_untrusted_receivers_refused(tmp_path: Path, siem: Engine) -> None:
    pki = make_pki(tmp_path / "pki")
    with Rsyslog(tmp_path / "rs", pki) as rs:
        clock = Clock()
        wrong = _delivery(tmp_path, DeliveryConfig(
            CONSOLE, syslog=SyslogTarget(f"tcp+tls://localhost:{rs.tls_port}", ca_file=pki.other_ca)), clock,
            outbox="a.db")
        assert wrong.tick()["syslog"] == 0
        status = wrong.status()["syslog"]
        assert not status["ok"] and status["backlog"] == 3 and "certificate not trusted" in status["last_error"]
        d = _delivery(tmp_path, DeliveryConfig(
            CONSOLE, syslog=SyslogTarget(f"tcp+tls://localhost:{rs.tls_port}", ca_file=pki.ca)), outbox="b.db")
        assert d.tick()["syslog"] == 3
        lines = rs.wait_for(3)
    assert len(lines) == 3 and all(" ztcp " in line for line in lines)
    assert d.status()["syslog"] | {"last_ok": None} == {"ok": True, "backlog": 0, "failed": 0, "delivered": 3,
                                                         "last_ok": None, "last_error": None, "last_error_at": None,
                                                         "retry_at": None}


def test_receiver_down_keeps_a_durable_backlog_delivered_in_order_once(tmp_path: Path, siem: Engine) -> None:
    port = free_port()
    clock = Clock()
    cfg = DeliveryConfig(CONSOLE, syslog=SyslogTarget(f"tcp://127.0.0.1:{port}"))
    d = _delivery(tmp_path, cfg, clock)
    t0 = time.perf_counter()
    assert d.tick() == {"syslog": 0}
    assert time.perf_counter() - t0 < 2  # a refused connection costs nothing; nothing waits on it
    st = d.status()["syslog"]
    assert (st["ok"], st["backlog"]) == (False, 3) and st["last_error"].startswith("cannot connect")
    clock.now += 1
    assert d.tick() == {"syslog": 0}  # backing off: not even tried
    # More alerts arrive while the receiver is down; then a restart of ztcp (new connections).
    triage.set_status(siem.conn, siem.alerts.list()[0].alert_id, "acknowledged", actor="soc-1")
    d = _delivery(tmp_path, cfg, clock)
    rs = Rsyslog(tmp_path / "rs")
    rs.tcp_port = port
    with rs:
        clock.now += 600
        assert d.tick()["syslog"] == 4
        assert d.tick()["syslog"] == 0  # de-duplicated: nothing twice
        lines = rs.wait_for(4)
    docs = [json.loads(line.split(" ", 7)[7]) for line in lines]
    outbox = d.conn.execute("SELECT alert_id, status FROM delivery_outbox WHERE channel='syslog' ORDER BY seq")
    assert [(x["event"]["id"], x["event"]["action"]) for x in docs] == [tuple(r) for r in outbox]
    assert docs[-1]["event"]["action"] == "acknowledged"
    assert d.status()["syslog"]["ok"] and d.status()["syslog"]["backlog"] == 0


def test_decisions_are_forwarded_from_when_configured(tmp_path: Path) -> None:
    t = Traffic(seed=4, employees=1)
    entries = [e for k, e in t.benign(days=1) if k == "decision"][:60]
    assert len(entries) == 60
    log: list[dict] = entries[:10]
    feed = DecisionFeed(events_after=lambda cur, n: (log[cur:cur + n], cur + len(log[cur:cur + n])),
                        last=lambda: len(log), pending=lambda cur: len(log) - cur)
    Engine(connect(tmp_path / "siem.db"))
    with Rsyslog(tmp_path / "rs") as rs:
        cfg = DeliveryConfig(CONSOLE, syslog=SyslogTarget(f"tcp://127.0.0.1:{rs.tcp_port}"), syslog_format="cef",
                             syslog_decisions=True)
        d = _delivery(tmp_path, cfg, decisions=feed)
        assert d.tick().get("syslog.decisions") == 0  # starts at the log's end: no flood of history
        log.extend(entries[10:60])
        assert d.status()["syslog.decisions"]["backlog"] == 50
        assert d.tick()["syslog.decisions"] == 50
        lines = rs.wait_for(50)
    assert len(lines) == 50
    assert [line.split("externalId=")[1].split(" ")[0] for line in lines] == [e["decision_id"] for e in entries[10:60]]
    assert all("|decision:" in line and " msgid" not in line for line in lines)


# ---- email -------------------------------------------------------------------------------------------


def test_email_over_starttls_with_auth_carries_no_personal_data(tmp_path: Path, siem: Engine) -> None:
    pki = make_pki(tmp_path / "pki")
    with Smtp(pki=pki, user="ztcp", password="s3cret-not-in-argv") as smtp:
        mail = EmailChannel(f"smtp://ztcp@127.0.0.1:{smtp.port}", ["soc@bureau.test"], "ztcp@bureau.test",
                            password="s3cret-not-in-argv", ca_file=pki.ca)
        d = _delivery(tmp_path, DeliveryConfig(CONSOLE, email=mail, min_level="high"))
        assert d.tick()["email"] == 2  # critical and high; the medium alert is below min_level
        got = smtp.wait_for(2)
    assert len(got) == 2 and all(tls for *_, tls in got)  # STARTTLS was used
    alerts = {a.alert_id: a for a in siem.alerts.list()}
    for _, rcpts, raw, _ in got:
        assert rcpts == ["soc@bureau.test"]
        msg = message_from_bytes(raw)
        alert = alerts[msg["X-Ztcp-Alert-Id"]]
        body = msg.get_payload(decode=True).decode()
        assert alert.alert_id in msg["Subject"] and alert.level.upper() in msg["Subject"]
        assert f"{CONSOLE}/alerts/{alert.alert_id}" in body and f"Events:  {alert.event_count}" in body
        text = raw.decode(errors="replace")
        for value in alert.group_keys.values():  # who and whom stay in the console
            assert str(value) not in text
        assert "cr_" not in text and "emp-" not in text


def test_credentials_never_go_in_clear_and_a_refusal_is_permanent(tmp_path: Path, siem: Engine) -> None:
    with Smtp(user="ztcp", password="pw") as smtp:  # no TLS offered
        mail = EmailChannel(f"smtp://ztcp@127.0.0.1:{smtp.port}", ["soc@bureau.test"], "ztcp@bureau.test",
                            password="pw")
        d = _delivery(tmp_path, DeliveryConfig(CONSOLE, email=mail))
        assert d.tick()["email"] == 0
        assert smtp.messages == []
    st = d.status()["email"]
    assert st["failed"] == 2 and st["backlog"] == 0 and "in clear" in st["last_error"] and st["ok"] is not None
    assert "pw" not in json.dumps(st)


def test_smtp_temporary_failure_is_retried_with_backoff(tmp_path: Path, siem: Engine) -> None:
    with Smtp() as smtp:
        smtp.fail_with = 451
        clock = Clock()
        mail = EmailChannel(f"smtp://127.0.0.1:{smtp.port}", ["soc@bureau.test"], "ztcp@bureau.test")
        d = _delivery(tmp_path, DeliveryConfig(CONSOLE, email=mail), clock)
        assert d.tick()["email"] == 0
        st = d.status()["email"]
        assert (st["backlog"], st["failed"], st["last_error"]) == (2, 0, "SMTP 451")
        smtp.fail_with = None
        assert d.tick()["email"] == 0  # within the backoff
        clock.now += 3
        assert d.tick()["email"] == 2
        assert len(smtp.wait_for(2)) == 2


# ---- webhooks ----------------------------------------------------------------------------------------


def test_webhook_is_signed_retried_and_delivered_once_per_status_change(tmp_path: Path, siem: Engine) -> None:
    secret = b"webhook-secret-from-the-environment"
    with WebhookReceiver(statuses=[503]) as hook:
        clock = Clock()
        cfg = DeliveryConfig(CONSOLE, webhook=WebhookChannel(hook.url, secret), min_level="critical")
        d = _delivery(tmp_path, cfg, clock)
        assert d.tick()["webhook"] == 0 and d.status()["webhook"]["last_error"] == "webhook answered HTTP 503"
        clock.now += 2
        assert d.tick()["webhook"] == 1
        critical = next(a for a in siem.alerts.list() if a.level == "critical")
        # A restart does not deliver it again; a status change is delivered once.
        d = _delivery(tmp_path, cfg, clock)
        assert d.tick()["webhook"] == 0
        triage.set_status(siem.conn, critical.alert_id, "acknowledged", actor="soc-1")
        assert d.tick()["webhook"] == 1
        assert d.tick()["webhook"] == 0
    assert len(hook.requests) == 3  # the 503, its retry, the acknowledgement
    (h1, b1), (h2, b2), (h3, b3) = hook.requests
    assert b1 == b2 and h1["x-ztcp-delivery"] == h2["x-ztcp-delivery"] != h3["x-ztcp-delivery"]
    for headers, body in hook.requests:
        assert verify_webhook(secret, body, headers["x-ztcp-timestamp"], headers["x-ztcp-signature"],
                              now=clock.now)
    assert [json.loads(b)["status"] for b in (b2, b3)] == ["open", "acknowledged"]
    doc = json.loads(b3)
    assert set(doc) == {"kind", "alert_id", "rule", "title", "level", "risk_score", "status", "event_count",
                        "console_url", "first_seen", "last_seen"}
    assert doc["alert_id"] == critical.alert_id and doc["level"] == "critical"


def test_webhook_client_error_is_not_retried(tmp_path: Path, siem: Engine) -> None:
    with WebhookReceiver(statuses=[400, 400]) as hook:
        d = _delivery(tmp_path, DeliveryConfig(CONSOLE, webhook=WebhookChannel(hook.url, b"k" * 32)))
        assert d.tick()["webhook"] == 0
    assert len(hook.requests) == 2 and d.status()["webhook"]["failed"] == 2


def test_verify_webhook_refuses_tampering_replay_and_accepts_a_rotation() -> None:
    from siem_rules.delivery import sign_webhook

    secret, body, now = b"s" * 32, b'{"alert_id":"al_1"}', 1_800_000_000
    sig = sign_webhook(secret, now, body)
    assert verify_webhook(secret, body, str(now), sig, now=now + 10)
    assert not verify_webhook(secret, body + b" ", str(now), sig, now=now)
    assert not verify_webhook(secret, body, str(now + 1), sig, now=now)  # the timestamp is signed
    assert not verify_webhook(secret, body, str(now), sig, now=now + 301)  # stale: a replay
    assert not verify_webhook(b"other" * 8, body, str(now), sig, now=now)
    assert not verify_webhook(secret, body, None, sig) and not verify_webhook(secret, body, "x", sig)
    assert verify_webhook(secret, body, str(now), f"v1=00, {sig}", now=now)  # old and new secret side by side


# ---- escalation --------------------------------------------------------------------------------------


def test_a_critical_alert_left_unacknowledged_is_escalated_once(tmp_path: Path, siem: Engine) -> None:
    with Smtp() as smtp:
        clock = Clock()
        first = EmailChannel(f"smtp://127.0.0.1:{smtp.port}", ["soc@bureau.test"], "ztcp@bureau.test")
        duty = EmailChannel(f"smtp://127.0.0.1:{smtp.port}", ["duty-officer@bureau.test"], "ztcp@bureau.test")
        cfg = DeliveryConfig(CONSOLE, email=first, escalation=duty, escalate_after=900, min_level="critical")
        d = _delivery(tmp_path, cfg, clock)
        assert d.tick() == {"email": 1, "escalation": 0}
        clock.now += 899
        assert d.tick() == {"email": 0, "escalation": 0}
        clock.now += 2
        assert d.tick() == {"email": 0, "escalation": 1}
        clock.now += 3600
        assert d.tick() == {"email": 0, "escalation": 0}  # once per opening
        # Acknowledged, then reopened and left again: a new opening, escalated again later.
        critical = next(a for a in siem.alerts.list() if a.level == "critical")
        triage.set_status(siem.conn, critical.alert_id, "acknowledged", actor="soc-1")
        assert d.tick() == {"email": 1, "escalation": 0}
        triage.set_status(siem.conn, critical.alert_id, "open", actor="soc-1")
        clock.now = time.time() + 1000
        assert d.tick() == {"email": 1, "escalation": 1}
        got = smtp.wait_for(5)
    escalations = [m for m in got if m[1] == ["duty-officer@bureau.test"]]
    assert len(escalations) == 2
    subject = " ".join(message_from_bytes(escalations[0][2])["Subject"].split())
    assert subject.startswith("[ztcp] ESCALATION: CRITICAL alert fraud_broker_read_then_account_change")


def test_a_new_leader_delivers_from_where_the_cluster_stands_not_from_the_start(tmp_path: Path, pg_dsn: str) -> None:
    """Shared alert store: leader A delivers; then leader B (a delivery.db of its own) takes over. B
    sends only what A had not — nothing of the shared history twice, nothing undelivered dropped."""
    from siem_rules.pg_alerts import PostgresAlertStore

    inc = Traffic(seed=3, employees=2).incidents()
    shared = PostgresAlertStore(pg_dsn)
    leader = Engine(connect(tmp_path / "siem-a.db"), RulePack(bureau_config()), alerts=shared)
    leader.store.ingest([e for name in ("fraud", "vip") for e in inc[name][1]])
    leader.run()
    first = {a.alert_id for a in shared.list()}
    with WebhookReceiver() as hook:
        cfg = DeliveryConfig(CONSOLE, webhook=WebhookChannel(hook.url, b"k" * 32), min_level="informational")
        a = Delivery(connect_outbox(tmp_path / "delivery-a.db"), PostgresAlertStore(pg_dsn), cfg, clock=Clock())
        assert a.tick()["webhook"] == len(first)
        # More happens after A's last tick: a new alert and a triage change. A dies.
        leader.store.ingest(inc["no_purpose"][1])
        leader.run()
        acked = sorted(first)[0]
        shared.set_status(acked, "acknowledged", actor="soc-1")
        b = Delivery(connect_outbox(tmp_path / "delivery-b.db"), PostgresAlertStore(pg_dsn), cfg, clock=Clock())
        assert b.tick()["webhook"] == 2  # the new alert and the acknowledgement, not the first ones again
        assert b.tick()["webhook"] == 0
    sent = [(json.loads(body)["alert_id"], json.loads(body)["status"]) for _, body in hook.requests]
    assert len(sent) == len(set(sent)) == len(first) + 2
    assert (acked, "acknowledged") in sent
    assert {aid for aid, _ in sent} == {x.alert_id for x in shared.list()}
