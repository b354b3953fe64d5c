"""Device identity and posture from credentials the end user cannot forge.

A device is *authenticated* by one of:

* a **device certificate** issued by the bureau's device CA, presented in mutual TLS at the trusted
  proxy, which passes the verified certificate on (``X-Client-Cert``, URL-encoded PEM, the form
  HAProxy and nginx use); ztcp checks it again against ``ZTCP_DEVICE_CA_FILE`` (issuer signature,
  validity) and takes the device id from its subject common name;
* a **signed posture assertion**: a short-lived JWT (``typ: device-posture+jwt``) from the bureau's
  MDM/EDR service, verified against that service's JWKS, with ``sub`` = the device id, no older than
  ``max_age`` seconds (``iat``), and bound to the certificate when both are presented
  (``cnf.x5t#S256``, RFC 8705).

Posture (managed, compliant, EDR, disk encryption, patch age) comes only from the assertion or
from the device inventory ztcp keeps (:class:`DeviceInventory`, ``ztcp devices …``), and the
inventory only speaks for an authenticated device. Everything else — a device id a browser made
up, a posture header from the internet — is an unknown device, scored as such.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from contracts.decision import Device, Posture
from pdp.errors import PdpError, TokenError
from pdp.identity import JwtVerifier

POSTURE_TYP = "device-posture+jwt"
UNKNOWN_DEVICE = "unknown"
INVENTORY_FILE = "devices.db"
DeviceSource = Literal["certificate", "assertion", "inventory", "proxy", "unknown"]
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-/")


class DeviceError(PdpError):
    """A device credential was refused. ``reason`` is a short code (expired, wrong_device, …)."""

    exit_code = 2

    _INPUT = frozenset({"bad_device_id", "bad_csv", "bad_ca"})  # the operator's input, not a refusal

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.exit_code = 1 if reason in self._INPUT else 2
        what = "invalid input" if reason in self._INPUT else "device credential refused"
        super().__init__(f"{what}: {reason}" + (f" ({detail})" if detail else ""))


class DevicePostureError(TokenError):
    """A posture assertion was refused (the JWT checks of :class:`JwtVerifier` raise this)."""


def valid_device_id(value: str) -> bool:
    return 0 < len(value) <= 128 and all(c in _ID_CHARS for c in value)


@dataclass(frozen=True)
class AuthenticatedDevice:
    """Who the device is (and how we know), and its posture if anything trustworthy says."""

    device: Device
    source: DeviceSource


# -- certificates --------------------------------------------------------------------------------
class DeviceCA:
    """The bureau's device CA: a client certificate it issued names a device."""

    def __init__(self, ca_pem: bytes) -> None:
        self.cas = x509.load_pem_x509_certificates(ca_pem)
        if not self.cas:
            raise DeviceError("bad_ca", "no certificate in the device CA file")

    @classmethod
    def from_file(cls, path: Path) -> DeviceCA:
        return cls(Path(path).read_bytes())

    def verify(self, pem: str, *, now: float | None = None) -> tuple[str, str]:
        """The device id (subject CN) and the certificate's SHA-256 thumbprint (base64url), or DeviceError."""
        text = (unquote(pem) if "%" in pem else pem).strip()
        try:
            if text.startswith("-----BEGIN"):  # nginx's $ssl_client_escaped_cert (URL-encoded PEM)
                cert = x509.load_pem_x509_certificate(text.encode("ascii"))
            else:  # HAProxy's %[ssl_c_der,base64]
                cert = x509.load_der_x509_certificate(base64.b64decode(text, validate=True))
        except (ValueError, UnicodeError, binascii.Error):
            raise DeviceError("bad_certificate", "not a PEM or base64 DER certificate") from None
        moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        if not (cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc):
            raise DeviceError("certificate_expired")
        for ca in self.cas:
            if ca.subject != cert.issuer:
                continue
            with contextlib.suppress(InvalidSignature, ValueError, TypeError):
                cert.verify_directly_issued_by(ca)
                break
        else:
            raise DeviceError("untrusted_certificate", "not issued by the device CA")
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        device_id = str(names[0].value) if names else ""
        if not valid_device_id(device_id):
            raise DeviceError("bad_certificate", "the subject common name is not a device id")
        thumb = base64.urlsafe_b64encode(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest())
        return device_id, thumb.rstrip(b"=").decode("ascii")


# -- posture assertions --------------------------------------------------------------------------
class PostureVerifier:
    """Verifies the MDM/EDR service's posture assertions (JWTs) for one device."""

    def __init__(self, verifier: JwtVerifier, *, max_age_seconds: int = 900) -> None:
        self.verifier = verifier
        self.max_age = max_age_seconds

    def verify(self, token: str, *, device_id: str | None, thumbprint: str | None,
               now: float | None = None) -> Device:
        current = time.time() if now is None else now
        _, claims = self.verifier.verify_claims(token, DevicePostureError, now=current, want_typ=POSTURE_TYP)
        iat = claims.get("iat")
        if not isinstance(iat, int | float):
            raise DevicePostureError("malformed", "iat missing")
        if current - iat > self.max_age:
            raise DevicePostureError("stale", f"older than {self.max_age} s")
        sub = claims["sub"]
        if not valid_device_id(sub):
            raise DevicePostureError("malformed", "sub is not a device id")
        if device_id is not None and sub != device_id:
            raise DevicePostureError("wrong_device", "the assertion is for another device")
        bound = (claims.get("cnf") or {}).get("x5t#S256") if isinstance(claims.get("cnf"), dict) else None
        if bound is not None and bound != thumbprint:
            raise DevicePostureError("wrong_device", "the assertion is bound to another certificate")
        posture: dict[str, Any] = claims["posture"] if isinstance(claims.get("posture"), dict) else {}
        try:
            return Device(id=sub, managed=claims.get("managed") is True, compliant=claims.get("compliant") is True,
                          posture=Posture(**{k: posture.get(k) for k in Posture.model_fields}))
        except ValueError:
            raise DevicePostureError("malformed", "posture claims of the wrong type") from None


# -- the inventory -------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    managed INTEGER NOT NULL,
    compliant INTEGER NOT NULL,
    baseline_ok INTEGER,
    edr_running INTEGER,
    disk_encrypted INTEGER,
    patch_age_days INTEGER,
    registered_at TEXT NOT NULL,
    registered_by TEXT NOT NULL,
    revoked_at TEXT,
    revoked_by TEXT
);
"""
_POSTURE = ("baseline_ok", "edr_running", "disk_encrypted", "patch_age_days")


@dataclass(frozen=True)
class InventoryRecord:
    device_id: str
    managed: bool
    compliant: bool
    posture: Posture
    registered_at: str
    registered_by: str
    revoked_at: str | None
    revoked_by: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "managed": self.managed, "compliant": self.compliant,
                "posture": self.posture.model_dump(), "registered_at": self.registered_at,
                "registered_by": self.registered_by, "revoked_at": self.revoked_at, "revoked_by": self.revoked_by}


class DeviceInventory:
    """The devices the bureau has enrolled, with their posture (one SQLite file, 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._local = threading.local()
        self._db().executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def register(self, device_id: str, *, managed: bool, compliant: bool, posture: Posture | None = None,
                 actor: str, now: float | None = None) -> InventoryRecord:
        """Enrol (or re-enrol, clearing a revocation) a device with its posture."""
        if not valid_device_id(device_id):
            raise DeviceError("bad_device_id", "1–128 characters of A-Z a-z 0-9 _ . : - /")
        p = posture or Posture()
        when = _iso(now)
        self._db().execute(
            "INSERT INTO devices VALUES (?,?,?,?,?,?,?,?,?,NULL,NULL) ON CONFLICT(device_id) DO UPDATE SET "
            "managed=excluded.managed, compliant=excluded.compliant, baseline_ok=excluded.baseline_ok, "
            "edr_running=excluded.edr_running, disk_encrypted=excluded.disk_encrypted, "
            "patch_age_days=excluded.patch_age_days, registered_at=excluded.registered_at, "
            "registered_by=excluded.registered_by, revoked_at=NULL, revoked_by=NULL",
            (device_id, int(managed), int(compliant), *(_opt(getattr(p, k)) for k in _POSTURE), when, actor))
        record = self.get(device_id)
        assert record is not None
        return record

    def revoke(self, device_id: str, *, actor: str, now: float | None = None) -> InventoryRecord:
        cur = self._db().execute(
            "UPDATE devices SET revoked_at=?, revoked_by=? WHERE device_id=? AND revoked_at IS NULL",
            (_iso(now), actor, device_id))
        record = self.get(device_id)
        if record is None:
            raise DeviceError("unknown_device", "no such device in the inventory")
        if cur.rowcount == 0:
            raise DeviceError("already_revoked")
        return record

    def get(self, device_id: str) -> InventoryRecord | None:
        row = self._db().execute("SELECT * FROM devices WHERE device_id=?", (device_id,)).fetchone()
        return _record(row) if row else None

    def records(self) -> Iterator[InventoryRecord]:
        for row in self._db().execute("SELECT * FROM devices ORDER BY device_id"):
            yield _record(row)

    def import_csv(self, path: Path, *, actor: str) -> int:
        """Enrol every row of a CSV (header: device_id,managed,compliant[,baseline_ok,edr_running,
        disk_encrypted,patch_age_days]). All or nothing: a bad row names its line and nothing is kept."""
        rows = []
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"device_id", "managed", "compliant"} - set(reader.fieldnames or ())
            if missing:
                raise DeviceError("bad_csv", f"missing column(s): {', '.join(sorted(missing))}")
            for line, raw in enumerate(reader, start=2):
                try:
                    posture = Posture.model_validate({k: _parse_opt(k, raw.get(k)) for k in _POSTURE})
                    rows.append((raw["device_id"].strip(), _parse_bool(raw["managed"]),
                                 _parse_bool(raw["compliant"]), posture))
                except (ValueError, TypeError, AttributeError):
                    raise DeviceError("bad_csv", f"line {line}: invalid value") from None
                if not valid_device_id(rows[-1][0]):
                    raise DeviceError("bad_csv", f"line {line}: device_id is not a device id")
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            for device_id, managed, compliant, posture in rows:
                self.register(device_id, managed=managed, compliant=compliant, posture=posture, actor=actor)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(rows)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _iso(now: float | None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).isoformat().replace("+00:00", "Z")


def _opt(value: object) -> object:
    return int(value) if isinstance(value, bool) else value


def _parse_bool(text: str | None) -> bool:
    value = (text or "").strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError("not a boolean")


def _parse_opt(key: str, text: str | None) -> bool | int | None:
    if text is None or not text.strip():
        return None
    return int(text) if key == "patch_age_days" else _parse_bool(text)


def _record(row: sqlite3.Row) -> InventoryRecord:
    posture = Posture(**{k: (row[k] if k == "patch_age_days" or row[k] is None else bool(row[k])) for k in _POSTURE})
    return InventoryRecord(device_id=row["device_id"], managed=bool(row["managed"]), compliant=bool(row["compliant"]),
                           posture=posture, registered_at=row["registered_at"], registered_by=row["registered_by"],
                           revoked_at=row["revoked_at"], revoked_by=row["revoked_by"])


# -- putting it together -------------------------------------------------------------------------
class DeviceAuthenticator:
    """Resolves a request's device from its credentials; anything unproven is the unknown device."""

    def __init__(self, *, ca: DeviceCA | None = None, posture: PostureVerifier | None = None,
                 inventory: DeviceInventory | None = None) -> None:
        self.ca = ca
        self.posture = posture
        self.inventory = inventory

    def authenticate(self, *, certificate: str | None, assertion: str | None, proxied_id: str | None,
                     now: float | None = None) -> AuthenticatedDevice:
        """``certificate`` and ``proxied_id`` (a device id the proxy vouches for) only from a trusted
        proxy; ``assertion`` may come from anyone (it is signed). Posture only from the assertion or
        the inventory; without any credential the device is :data:`UNKNOWN_DEVICE`."""
        source: DeviceSource = "proxy"
        device_id, thumbprint = proxied_id, None
        if certificate is not None:
            if self.ca is None:
                raise DeviceError("no_device_ca", "a client certificate was passed on; ZTCP_DEVICE_CA_FILE is unset")
            device_id, thumbprint = self.ca.verify(certificate, now=now)
            source = "certificate"
            if proxied_id is not None and proxied_id != device_id:
                raise DeviceError("wrong_device", "X-Device-Id differs from the certificate's device")
        if assertion is not None:
            if self.posture is None:
                raise DeviceError("no_posture_service", "posture assertions are not configured")
            device = self.posture.verify(assertion, device_id=device_id, thumbprint=thumbprint, now=now)
            return AuthenticatedDevice(device, "assertion")
        if device_id is None:
            return AuthenticatedDevice(Device(id=UNKNOWN_DEVICE), "unknown")
        record = self.inventory.get(device_id) if self.inventory else None
        if record is not None and record.active:
            return AuthenticatedDevice(Device(id=device_id, managed=record.managed, compliant=record.compliant,
                                              posture=record.posture), "inventory")
        return AuthenticatedDevice(Device(id=device_id), source)  # a known identity, no proven posture
