"""The SOC's conventions: RFC 5424 syslog messages carrying CEF or ECS JSON, and their framing.

* RFC 5424: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG``; facility configurable
  (``local0`` by default), severity from the alert level or the decision's effect and risk.
  Structured data is ``-``: CEF and ECS carry everything in MSG, which is how SIEMs ingest them.
* CEF (ArcSight Common Event Format 0; header ``|`` and ``\\`` escaped, extension ``=``, ``\\``
  and newlines escaped).
* ECS JSON (Elastic Common Schema 8.x field names: ``@timestamp``, ``event.*``, ``rule.*``,
  ``user.*``, ``source.ip``; the rest under ``ztcp.*``).
* TCP framing is octet counting (RFC 6587 §3.4.1, the framing RFC 5425 prescribes for TLS):
  ``LEN SP MSG``, so a message may hold any byte, newlines included.

Alerts hold references only (actor ids, ``citizen_ref``, event ids, counts) and decision-log
entries are minimised by the PDP, so nothing here can carry a raw personal value; the messages
carry what the SOC's SIEM needs to correlate with the bureau's other sources.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from typing import Any

APP = "ztcp"
VERSION = "0.1.0"
FACILITIES = {
    "kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10, "security": 13,
    **{f"local{i}": 16 + i for i in range(8)},
}
# RFC 5424 severities: 2 critical, 3 error, 4 warning, 5 notice, 6 informational.
ALERT_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "informational": 6}
CEF_SEVERITY = {"critical": 10, "high": 8, "medium": 5, "low": 3, "informational": 1}
ECS_SEVERITY = {"informational": 21, "low": 21, "medium": 47, "high": 73, "critical": 99}
ECS_VERSION = "8.11.0"
_HOST = (socket.gethostname() or "-").split(".")[0][:255] or "-"


def _ms(iso: str | None) -> int | None:
    if not iso:
        return None
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def rfc5424(msg: bytes, *, severity: int, facility: str = "local0", msgid: str = "-",
            timestamp: str | None = None, hostname: str | None = None) -> bytes:
    """One RFC 5424 message. MSG is sent as is: ASCII (ECS JSON is \\u-escaped) or, for CEF with
    non-ASCII text, UTF-8 with the BOM the RFC asks for."""
    pri = FACILITIES[facility] * 8 + severity
    ts = timestamp or datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if not msg.isascii():
        msg = b"\xef\xbb\xbf" + msg
    head = f"<{pri}>1 {ts} {hostname or _HOST} {APP} {os.getpid()} {msgid} -".encode("ascii")
    return head + b" " + msg


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 §3.4.1 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode("ascii") + b" " + message


# ---- CEF -------------------------------------------------------------------------------------------


def _cef_head(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _cef_ext(value: Any) -> str:
    return (str(value).replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n"))


def _cef(signature: str, name: str, severity: int, ext: dict[str, Any]) -> bytes:
    head = "|".join(["CEF:0", APP, APP, VERSION, _cef_head(signature), _cef_head(name), str(severity)])
    body = " ".join(f"{k}={_cef_ext(v)}" for k, v in ext.items() if v not in (None, ""))
    return (head + "|" + body).encode("utf-8")


def cef_alert(alert: dict[str, Any]) -> bytes:
    ext = {
        "rt": _ms(alert.get("updated_at")),
        "externalId": alert["alert_id"],
        "cs1Label": "rule", "cs1": alert["rule_name"],
        "cs2Label": "status", "cs2": alert["status"],
        "cs3Label": "groupKeys", "cs3": json.dumps(alert.get("group_keys") or {}, sort_keys=True),
        "cs4Label": "explanation", "cs4": alert.get("explanation"),
        "cs5Label": "consoleUrl", "cs5": alert.get("console_url"),
        "cnt": alert.get("event_count"),
        "start": _ms(alert.get("first_seen")),
        "end": _ms(alert.get("last_seen")),
        "cat": "alert",
    }
    return _cef(f"alert:{alert['rule_name']}", alert["rule_title"], CEF_SEVERITY.get(alert["level"], 5), ext)


def _decision_parts(entry: dict[str, Any]) -> dict[str, Any]:
    inp = entry.get("input") or {}
    res = entry.get("result") or {}
    subj = inp.get("subject") or {}
    ctx = inp.get("context") or {}
    rsc = inp.get("resource") or {}
    risk = res.get("risk") or {}
    return {"inp": inp, "res": res, "subj": subj, "ctx": ctx, "rsc": rsc, "risk": risk,
            "effect": res.get("effect") or "deny", "level": risk.get("level") or "low"}


def decision_severity(entry: dict[str, Any]) -> int:
    p = _decision_parts(entry)
    if p["effect"] == "permit":
        return 6 if p["level"] in ("low", "medium") else 5
    return 5 if p["level"] in ("low", "medium") else 4


def cef_decision(entry: dict[str, Any]) -> bytes:
    p = _decision_parts(entry)
    ext = {
        "rt": _ms(entry.get("timestamp")),
        "externalId": entry.get("decision_id"),
        "act": p["effect"],
        "outcome": "success" if p["effect"] == "permit" else "failure",
        "suser": p["subj"].get("id"),
        "src": p["ctx"].get("ip"),
        "request": p["inp"].get("action"),
        "reason": ",".join(p["res"].get("reasons") or []),
        "cs1Label": "dataset", "cs1": p["rsc"].get("dataset"),
        "cs2Label": "citizenRef", "cs2": p["rsc"].get("citizen_ref"),
        "cs3Label": "orgUnit", "cs3": p["subj"].get("org_unit"),
        "cs4Label": "purpose", "cs4": (p["inp"].get("purpose") or {}).get("code"),
        "cn1Label": "riskScore", "cn1": p["risk"].get("score"),
        "cat": "decision",
    }
    sev = {"low": 2, "medium": 4, "high": 7, "critical": 9}.get(p["level"], 3)
    return _cef(f"decision:{p['effect']}", f"decision {p['effect']}", sev, ext)


# ---- ECS -------------------------------------------------------------------------------------------


def _json(doc: dict[str, Any]) -> bytes:
    # ensure_ascii: the message stays ASCII, so no BOM and no encoding question at the receiver.
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str).encode("ascii")


def ecs_alert(alert: dict[str, Any]) -> bytes:
    doc = {
        "@timestamp": alert.get("updated_at"),
        "ecs": {"version": ECS_VERSION},
        "message": alert["rule_title"] + (f": {alert['explanation']}" if alert.get("explanation") else ""),
        "event": {
            "kind": "alert", "module": APP, "dataset": "ztcp.alert", "id": alert["alert_id"],
            "severity": ECS_SEVERITY.get(alert["level"], 47), "action": alert["status"],
            "start": alert.get("first_seen"), "end": alert.get("last_seen"), "url": alert.get("console_url"),
        },
        "rule": {"id": alert["rule_id"], "name": alert["rule_name"], "description": alert["rule_title"]},
        "ztcp": {"alert": {k: alert.get(k) for k in ("level", "status", "group_keys", "event_count", "explanation",
                                                      "window_start", "window_end")}},
    }
    return _json(doc)


def ecs_decision(entry: dict[str, Any]) -> bytes:
    p = _decision_parts(entry)
    effect = p["effect"]
    doc = {
        "@timestamp": entry.get("timestamp"),
        "ecs": {"version": ECS_VERSION},
        "message": f"decision {effect}",
        "event": {
            "kind": "event", "module": APP, "dataset": "ztcp.decision", "id": entry.get("decision_id"),
            "category": ["iam"], "type": ["access" if effect == "permit" else "denied"],
            "outcome": "success" if effect == "permit" else "failure", "action": p["inp"].get("action"),
            "reason": ",".join(p["res"].get("reasons") or []) or None,
            "risk_score": p["risk"].get("score"),
        },
        "user": {"id": p["subj"].get("id"), "roles": p["subj"].get("roles") or []},
        "source": {"ip": p["ctx"].get("ip")},
        "ztcp": {"decision": {
            "effect": effect, "risk_level": p["level"], "org_unit": p["subj"].get("org_unit"),
            "network_zone": p["ctx"].get("network_zone"), "dataset": p["rsc"].get("dataset"),
            "citizen_ref": p["rsc"].get("citizen_ref"), "record_id": p["rsc"].get("record_id"),
            "purpose": (p["inp"].get("purpose") or {}).get("code"),
            "revision": ((entry.get("bundles") or {}).get("ztcp") or {}).get("revision"),
        }},
    }
    return _json(doc)


def alert_message(alert: dict[str, Any], fmt: str, facility: str) -> bytes:
    body = cef_alert(alert) if fmt == "cef" else ecs_alert(alert)
    return rfc5424(body, severity=ALERT_SEVERITY.get(alert["level"], 4), facility=facility, msgid="alert")


def decision_message(entry: dict[str, Any], fmt: str, facility: str) -> bytes:
    body = cef_decision(entry) if fmt == "cef" else ecs_decision(entry)
    return rfc5424(body, severity=decision_severity(entry), facility=facility, msgid="decision")
