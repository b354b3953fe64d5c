"""The staff directory for development sign-in (``ZTCP_HOME/directory.json``, written by the demo).

Read defensively: the file may be a list or ``{"staff": [...]}``, keys may vary slightly, and any
entry that does not look like a staff member is skipped. Without a directory, a handful of
development personas (one per console role, two security officers for maker-checker) stand in.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pdp.identity import AUTH_STRENGTH

log = logging.getLogger("ztcp.console")
DIRECTORY_FILE = "directory.json"
CONSOLE_ROLES = ("auditor", "soc_analyst", "security_officer", "key_custodian")
_ID = re.compile(r"^[A-Za-z0-9_.:\-/]{1,128}$")
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class StaffMember:
    id: str
    name: str
    office: str | None
    roles: tuple[str, ...]
    auth_method: str

    @property
    def console_roles(self) -> tuple[str, ...]:
        return tuple(r for r in self.roles if r in CONSOLE_ROLES)


PERSONAS = (
    StaffMember("dev-auditor", "Development auditor", "head-office", ("auditor",), "fido2"),
    StaffMember("dev-soc", "Development SOC analyst", "head-office", ("soc_analyst",), "fido2"),
    StaffMember("dev-officer-1", "Development security officer 1", "head-office", ("security_officer",), "fido2"),
    StaffMember("dev-officer-2", "Development security officer 2", "head-office", ("security_officer",), "fido2"),
    StaffMember("dev-custodian", "Development key custodian", "head-office", ("key_custodian",), "fido2"),
)


def _first(d: dict, *keys: str) -> object:
    for k in keys:
        if d.get(k) not in (None, ""):
            return d[k]
    return None


def _entry(raw: object) -> StaffMember | None:
    if not isinstance(raw, dict):
        return None
    sid = _first(raw, "id", "staff_id", "employee_id", "sub")
    if not isinstance(sid, str) or not _ID.match(sid):
        return None
    roles = _first(raw, "roles", "role")
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list):
        return None
    roles = tuple(r for r in roles if isinstance(r, str) and _ID.match(r))
    name = _first(raw, "display_name", "name", "displayName")
    office = _first(raw, "office", "org_unit", "unit", "office_id")
    method = _first(raw, "auth_method", "auth", "method")
    if isinstance(method, dict):
        method = _first(method, "method", "auth_method")
    if not isinstance(method, str) or method not in AUTH_STRENGTH or method == "none":
        method = "password"
    return StaffMember(sid, name if isinstance(name, str) and name.strip() else sid,
                       office if isinstance(office, str) and _ID.match(office) else None, roles, method)


def load_directory(home: Path) -> tuple[list[StaffMember], bool]:
    """(staff who hold a console role, whether any came from the directory file); personas fill
    roles nobody in the directory holds."""
    path = home / DIRECTORY_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return list(PERSONAS), False
    except (OSError, ValueError) as exc:
        log.warning("console: %s is unreadable (%s); using development personas", path, type(exc).__name__)
        return list(PERSONAS), False
    entries = doc.get("staff", doc.get("people", [])) if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        return list(PERSONAS), False
    staff = [m for m in (_entry(e) for e in entries[:MAX_ENTRIES]) if m is not None and m.console_roles]
    if not staff:
        return list(PERSONAS), False
    staff.sort(key=lambda m: (m.console_roles[0], m.id))
    # A directory without anyone in some console role still lets that page be tried.
    held = {r for m in staff for r in m.console_roles}
    staff += [p for p in PERSONAS if not set(p.console_roles) & held]
    return staff, True
