"""The revision store: versioned policy packs, maker-checker approval, publishing, rollback.

SQLite (WAL) in ``ZTCP_HOME/policy.db``, or PostgreSQL (``RevisionStore("postgresql://…")``, see
:mod:`policy.pg`) so that replicas publish to and follow one store. A revision is an immutable
snapshot of a pack's files with a content digest; its *status* moves through::

    proposed → approved → published → superseded / rolled_back
                    ↘ shadow (report-only; the PDP evaluates it beside the active one)

Two slots name what the PDP runs: ``active`` (enforced) and ``shadow``. Each change to a slot bumps
a generation counter, so a poller can compare one small row (:meth:`RevisionStore.state`) and fetch
the signed bundle (:meth:`active`, :meth:`shadow`) only when something changed. The bundle is signed
at publish time and stored with the revision; the PDP must verify it (``policy.verify_bundle``)
rather than trust this database.

Rules enforced here (and recorded as ``policy.refused`` events when broken): the author cannot
approve their own revision; an officer approves a revision once; publishing needs the required
number of approvals unless it is an emergency publish with a reason; rollback only goes to a
revision that was enforced before. Shadow publishing does not need approval by default (it
enforces nothing); pass ``shadow_requires_approval=True`` to require it.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uuid_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict

from contracts.policy_event import PolicyAdminEvent as AdminEvent
from policy.bundle import ACTIVE_SCOPE, SHADOW_SCOPE, BundleSigner, as_signer, build_bundle
from policy.errors import (
    LifecycleRefused,
    PolicyError,
    RevisionNotFound,
    StoreIntegrityError,
    ValidationFailed,
)
from policy.pack import PolicyPack, pack_from_files
from policy.pg import PgDb, is_postgres_url

DB_NAME = "policy.db"
# "No limit" that both dialects accept (SQLite's -1 is an error in PostgreSQL).
_NO_LIMIT = 2**62
STATUSES = ("proposed", "approved", "published", "shadow", "superseded", "rolled_back")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    parent TEXT,
    author TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TEXT NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    checks TEXT,
    published_at TEXT,
    published_by TEXT,
    emergency_reason TEXT,
    bundle BLOB,
    shadow_bundle BLOB
);
CREATE INDEX IF NOT EXISTS revisions_digest ON revisions(digest);
CREATE TABLE IF NOT EXISTS revision_files (
    revision TEXT NOT NULL REFERENCES revisions(id),
    path TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (revision, path)
);
CREATE TABLE IF NOT EXISTS approvals (
    revision TEXT NOT NULL REFERENCES revisions(id),
    approver TEXT NOT NULL,
    approved_at TEXT NOT NULL,
    comment TEXT,
    PRIMARY KEY (revision, approver)
);
CREATE TABLE IF NOT EXISTS slots (
    name TEXT PRIMARY KEY,
    revision TEXT,
    generation INTEGER NOT NULL DEFAULT 0,
    changed_at TEXT
);
CREATE TABLE IF NOT EXISTS publications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    revision TEXT NOT NULL,
    slot TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    time TEXT NOT NULL,
    type TEXT NOT NULL,
    actor TEXT NOT NULL,
    revision TEXT,
    digest TEXT,
    reason TEXT,
    detail TEXT NOT NULL
);
INSERT OR IGNORE INTO slots(name, revision, generation) VALUES ('active', NULL, 0), ('shadow', NULL, 0);
"""


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True)

    approver: str
    approved_at: str
    comment: str | None = None


class Revision(BaseModel):
    """A stored revision (files listed by name; contents via :meth:`RevisionStore.files`)."""

    model_config = ConfigDict(frozen=True)

    id: str
    seq: int
    parent: str | None
    author: str
    message: str
    created_at: str
    digest: str
    status: str
    files: list[str]
    approvals: list[Approval]
    checks: dict[str, Any] | None = None
    published_at: str | None = None
    published_by: str | None = None
    emergency_reason: str | None = None
    has_bundle: bool = False


@dataclass(frozen=True)
class SlotState:
    """What the PDP should run; compare ``generation`` to know whether to fetch bundles."""

    active: str | None
    active_digest: str | None
    shadow: str | None
    shadow_digest: str | None
    generation: int


@dataclass(frozen=True)
class PublishedBundle:
    """The signed bundle in a slot. Verify ``bundle`` before use; never trust the row.

    Active bundles are signed with scope ``write`` (OPA's convention), shadow bundles with scope
    ``shadow``: verify each with its own scope, so a report-only (possibly unapproved) revision's
    bundle can never be activated as the enforced one.
    """

    revision: str
    digest: str
    bundle: bytes
    published_at: str | None
    generation: int


def _now_iso(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _columns(row: sqlite3.Row, *names: str) -> dict[str, Any]:
    """The named columns of ``row``, as keyword arguments for a model whose fields share their names."""
    return {name: row[name] for name in names}


class RevisionStore:
    def __init__(
        self,
        path: Path | str,
        *,
        required_approvals: int = 1,
        shadow_requires_approval: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if required_approvals < 1:
            raise ValueError("maker-checker needs at least one approval")
        self.required_approvals = required_approvals
        self.shadow_requires_approval = shadow_requires_approval
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._pg = is_postgres_url(path)
        if self._pg:  # shared by every replica: see policy/pg.py
            self.path: Path | None = None
            self._db: Any = PgDb(str(path))
            return
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        # Several processes may open a fresh file at once (replicas starting together): switching it to
        # WAL can fail with "database is locked" without SQLite's busy handler being called, so the
        # idempotent set-up is retried for as long as the busy timeout would have waited.
        deadline = time.monotonic() + 10
        while True:
            try:
                self._set_up()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _set_up(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._db.executescript(_SCHEMA)  # idempotent; executescript manages its own transaction
            columns = {r["name"] for r in self._db.execute("PRAGMA table_info(revisions)")}
            if "shadow_bundle" not in columns:  # stores created before shadow bundles had their own scope
                self._db.execute("ALTER TABLE revisions ADD COLUMN shadow_bundle BLOB")

    @classmethod
    def in_home(cls, home: Path | str, **kwargs: Any) -> RevisionStore:
        return cls(Path(home) / DB_NAME, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> RevisionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._pg:
                self._db.begin_write()  # BEGIN, then the store's write lock (SQLite: BEGIN IMMEDIATE)
            else:
                self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._pg:
                    self._db.rollback()
                else:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _now(self) -> str:
        return _now_iso(self._clock())

    def _event(
        self,
        db: sqlite3.Connection,
        type_: str,
        actor: str,
        *,
        row: sqlite3.Row | None = None,
        revision: str | None = None,
        digest: str | None = None,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append an admin event; ``row`` is the revision it is about (its id and digest)."""
        if row is not None:
            revision, digest = row["id"], row["digest"]
        db.execute(
            "INSERT INTO admin_events(event_id, time, type, actor, revision, digest, reason, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(uuid_utils.uuid7()),
                self._now(),
                type_,
                actor,
                revision,
                digest,
                reason,
                json.dumps(detail or {}, sort_keys=True),
            ),
        )

    def record_refusal(self, actor: str, action: str, code: str, message: str,
                       revision: str | None = None) -> LifecycleRefused:
        """Record an attempt refused before it reached the store (e.g. the operator's token was
        refused at the CLI) as a ``policy.refused`` admin event; returns the error to raise."""
        return self._refuse(actor, action, code, message, None, revision)

    def _refuse(
        self,
        actor: str,
        action: str,
        reason_code: str,
        message: str,
        row: sqlite3.Row | None = None,
        revision: str | None = None,
    ) -> LifecycleRefused:
        """Record a refused attempt (own transaction, after the failed one rolled back)."""
        with self._tx() as db:
            self._event(
                db, "policy.refused", actor, row=row, revision=revision, reason=message,
                detail={"action": action, "code": reason_code},
            )
        return LifecycleRefused(message, reason=reason_code, revision=row["id"] if row is not None else revision)

    def _row(self, db: sqlite3.Connection, ref: str) -> sqlite3.Row:
        ref = ref.strip()
        row: sqlite3.Row | None = None
        if ref in ("active", "shadow"):
            slot = db.execute("SELECT revision FROM slots WHERE name = ?", (ref,)).fetchone()
            if slot is None or slot["revision"] is None:
                raise RevisionNotFound(f"no {ref} revision")
            ref = slot["revision"]
        if ref == "latest":
            row = db.execute("SELECT * FROM revisions ORDER BY seq DESC LIMIT 1").fetchone()
        elif re.fullmatch(r"r?\d+", ref):
            row = db.execute("SELECT * FROM revisions WHERE seq = ?", (int(ref.lstrip("r")),)).fetchone()
        elif re.fullmatch(r"(sha256:)?[0-9a-f]{8,64}", ref):
            prefix = ref if ref.startswith("sha256:") else "sha256:" + ref
            rows = db.execute(
                "SELECT * FROM revisions WHERE substr(digest, 1, ?) = ? ORDER BY seq",
                (len(prefix), prefix),
            ).fetchall()
            ids = sorted({r["digest"] for r in rows})
            if len(ids) > 1:
                raise RevisionNotFound(f"digest prefix {ref} is ambiguous")
            row = rows[-1] if rows else None
        if row is None:
            raise RevisionNotFound(f"no revision {ref!r} (use r<N>, a digest prefix, 'active' or 'shadow')")
        return row

    def _revision(self, db: sqlite3.Connection, row: sqlite3.Row) -> Revision:
        files = [
            r["path"]
            for r in db.execute("SELECT path FROM revision_files WHERE revision = ? ORDER BY path", (row["id"],))
        ]
        approvals = [
            Approval(**_columns(r, "approver", "approved_at", "comment"))
            for r in db.execute(
                "SELECT * FROM approvals WHERE revision = ? ORDER BY approved_at, approver", (row["id"],)
            )
        ]
        return Revision(
            **_columns(
                row,
                "id", "seq", "parent", "author", "message", "created_at", "digest", "status",
                "published_at", "published_by", "emergency_reason",
            ),
            files=files,
            approvals=approvals,
            checks=json.loads(row["checks"]) if row["checks"] else None,
            has_bundle=row["bundle"] is not None,
        )

    def _insert_revision(
        self,
        db: sqlite3.Connection,
        pack: PolicyPack,
        *,
        parent: str | None,
        author: str,
        message: str,
        checks: dict[str, Any] | None = None,
    ) -> str:
        """Store ``pack`` and its files as a new ``proposed`` revision; returns its id (``r<seq>``)."""
        sql = ("INSERT INTO revisions(id, parent, author, message, created_at, digest, status, checks)"
               " VALUES ('pending', ?, ?, ?, ?, ?, 'proposed', ?)")
        args = (parent, author, message, self._now(), pack.digest, json.dumps(checks) if checks else None)
        seq = db.execute(sql + " RETURNING seq", args).fetchone()[0] if self._pg else db.execute(sql, args).lastrowid
        rev_id = f"r{seq}"
        db.execute("UPDATE revisions SET id = ? WHERE seq = ?", (rev_id, seq))
        db.executemany(
            "INSERT INTO revision_files(revision, path, content) VALUES (?, ?, ?)",
            [(rev_id, name, raw) for name, raw in sorted(pack.files.items())],
        )
        return rev_id

    def _slot(self, db: sqlite3.Connection, name: str) -> str | None:
        revision: str | None = db.execute("SELECT revision FROM slots WHERE name = ?", (name,)).fetchone()["revision"]
        return revision

    def _set_slot(self, db: sqlite3.Connection, name: str, revision: str | None, action: str, actor: str) -> None:
        now = self._now()
        db.execute(
            "UPDATE slots SET revision = ?, generation = generation + 1, changed_at = ? WHERE name = ?",
            (revision, now, name),
        )
        if revision is not None:
            db.execute(
                "INSERT INTO publications(revision, slot, action, actor, at) VALUES (?, ?, ?, ?, ?)",
                (revision, name, action, actor, now),
            )

    def _approval_count(self, db: sqlite3.Connection, rev: str) -> int:
        count: int = db.execute("SELECT count(*) FROM approvals WHERE revision = ?", (rev,)).fetchone()[0]
        return count

    # --- reading -------------------------------------------------------------------------------

    def get(self, ref: str) -> Revision:
        with self._lock:
            return self._revision(self._db, self._row(self._db, ref))

    def history(self, limit: int | None = None) -> list[Revision]:
        """Newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM revisions ORDER BY seq DESC LIMIT ?", (limit if limit else _NO_LIMIT,)
            ).fetchall()
            return [self._revision(self._db, row) for row in rows]

    def files(self, ref: str) -> dict[str, bytes]:
        with self._lock:
            row = self._row(self._db, ref)
            return {
                r["path"]: bytes(r["content"])
                for r in self._db.execute("SELECT path, content FROM revision_files WHERE revision = ?", (row["id"],))
            }

    def pack(self, ref: str) -> PolicyPack:
        rev = self.get(ref)
        return pack_from_files(self.files(rev.id), revision=rev.id)

    def bundle(self, ref: str) -> bytes:
        """The signed bundle stored when the revision was published.

        Only published revisions have one: signing on demand would let anyone with CLI access
        mint a validly signed bundle of an unapproved revision and bypass maker-checker.
        """
        with self._lock:
            row = self._row(self._db, ref)
        if row["bundle"] is None:
            raise LifecycleRefused(
                f"{row['id']} ({row['status']}) was never published, so it has no signed bundle",
                reason="not_published",
                revision=row["id"],
            )
        return bytes(row["bundle"])

    def state(self) -> SlotState:
        """One cheap query for pollers."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.name, s.revision, s.generation, r.digest FROM slots s"
                " LEFT JOIN revisions r ON r.id = s.revision"
            ).fetchall()
        by = {r["name"]: r for r in rows}
        return SlotState(
            active=by["active"]["revision"],
            active_digest=by["active"]["digest"],
            shadow=by["shadow"]["revision"],
            shadow_digest=by["shadow"]["digest"],
            generation=sum(r["generation"] for r in rows),
        )

    def _published(self, slot: str) -> PublishedBundle | None:
        with self._lock:
            row = self._db.execute(
                "SELECT s.generation, r.id, r.digest, r.published_at,"
                " CASE WHEN s.name = 'shadow' THEN r.shadow_bundle ELSE r.bundle END AS bundle FROM slots s"
                " JOIN revisions r ON r.id = s.revision WHERE s.name = ?",
                (slot,),
            ).fetchone()
        if row is None or row["bundle"] is None:
            return None
        return PublishedBundle(row["id"], row["digest"], bytes(row["bundle"]), row["published_at"], row["generation"])

    def active(self) -> PublishedBundle | None:
        """The enforced revision and its signed bundle (None before the first publish)."""
        return self._published("active")

    def shadow(self) -> PublishedBundle | None:
        """The report-only revision and its signed bundle, if any."""
        return self._published("shadow")

    def iter_since(self, cursor: int | str | None = None, limit: int | None = None) -> Iterator[AdminEvent]:
        """Admin events after ``cursor`` (exclusive), oldest first."""
        after = int(cursor) if cursor not in (None, "") else 0
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM admin_events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit if limit else _NO_LIMIT),
            ).fetchall()
        for r in rows:
            yield AdminEvent(
                **_columns(r, "event_id", "time", "type", "actor", "revision", "digest", "reason"),
                cursor=r["seq"],
                detail=json.loads(r["detail"]),
            )

    def events_after(self, cursor: int | str | None, limit: int = 10_000) -> tuple[list[dict[str, Any]], int | None]:
        """SIEM feed shape: ``(events as dicts without "kind", new cursor)``; the cursor does not move
        when there is nothing new. Wire it as
        ``siem_rules.CallableSource("policy-admin", "policy", store.events_after)``."""
        events = list(self.iter_since(cursor, limit))
        new_cursor = events[-1].cursor if events else (int(cursor) if cursor not in (None, "") else None)
        return [e.model_dump(mode="json", exclude={"kind"}) for e in events], new_cursor

    # --- lifecycle -----------------------------------------------------------------------------

    def propose(
        self,
        pack: PolicyPack,
        *,
        author: str,
        message: str,
        checks: dict[str, Any] | None = None,
    ) -> Revision:
        """Store ``pack`` as a new proposed revision (the caller validated and tested it)."""
        if not message.strip():
            raise PolicyError("a revision needs a message (-m)")
        if checks and (checks.get("problems") or checks.get("failed") or checks.get("errors")):
            raise ValidationFailed([f"checks failed: {json.dumps(checks, sort_keys=True)}"], what="candidate")
        with self._tx() as db:
            same = db.execute(
                "SELECT id, status FROM revisions WHERE digest = ?"
                " AND status IN ('proposed', 'approved', 'shadow', 'published')",
                (pack.digest,),
            ).fetchone()
            if same is not None:
                raise PolicyError(f"identical content is already revision {same['id']} ({same['status']})")
            parent = self._slot(db, "active")
            rev_id = self._insert_revision(
                db, pack, parent=parent, author=author, message=message.strip(), checks=checks
            )
            self._event(
                db,
                "policy.propose",
                author,
                revision=rev_id,
                digest=pack.digest,
                reason=message.strip(),
                detail={"parent": parent, "files": len(pack.files)},
            )
            return self._revision(db, self._row(db, rev_id))

    def approve(self, ref: str, *, approver: str, comment: str | None = None) -> Revision:
        refusal: tuple[str, str, sqlite3.Row] | None = None
        with self._tx() as db:
            row = self._row(db, ref)
            if row["author"] == approver:
                refusal = (
                    "self_approval",
                    f"{approver} authored {row['id']} and cannot approve it (maker-checker)",
                    row,
                )
            elif db.execute(
                "SELECT 1 FROM approvals WHERE revision = ? AND approver = ?", (row["id"], approver)
            ).fetchone():
                refusal = ("already_approved", f"{approver} already approved {row['id']}", row)
            elif row["status"] in ("superseded", "rolled_back"):
                refusal = ("not_approvable", f"{row['id']} is {row['status']}; propose it again instead", row)
            else:
                db.execute(
                    "INSERT INTO approvals(revision, approver, approved_at, comment) VALUES (?, ?, ?, ?)",
                    (row["id"], approver, self._now(), comment),
                )
                count = self._approval_count(db, row["id"])
                if row["status"] == "proposed" and count >= self.required_approvals:
                    db.execute("UPDATE revisions SET status = 'approved' WHERE id = ?", (row["id"],))
                self._event(
                    db, "policy.approve", approver, row=row, reason=comment,
                    detail={"approvals": count, "required": self.required_approvals, "author": row["author"]},
                )
                return self._revision(db, self._row(db, row["id"]))
        code, message, row = refusal
        raise self._refuse(approver, "approve", code, message, row)

    def _build(self, rev_id: str, signer: BundleSigner | Ed25519PrivateKey, scope: str, **meta: Any) -> bytes:
        pack = pack_from_files(self.files(rev_id), revision=rev_id)
        approved_digest = self.get(rev_id).digest
        if pack.digest != approved_digest:
            # What was reviewed and approved is the digest; never sign anything else.
            raise StoreIntegrityError(
                f"{rev_id}: stored files hash to {pack.digest}, not the proposed {approved_digest}; refusing to sign"
            )
        issued = int(self._clock().timestamp())
        return build_bundle(pack, rev_id, as_signer(signer).with_scope(scope), issued_at=issued, metadata=meta)

    def publish(
        self,
        ref: str,
        *,
        actor: str,
        signer: BundleSigner | Ed25519PrivateKey,
        shadow: bool = False,
        emergency_reason: str | None = None,
    ) -> Revision:
        """Sign and publish a revision to the active slot (or the shadow slot)."""
        emergency = emergency_reason is not None
        if emergency_reason is not None and not emergency_reason.strip():
            raise PolicyError("--emergency needs --reason TEXT")
        if emergency and shadow:
            raise PolicyError("--emergency applies to enforced publishing, not --shadow")
        slot = "shadow" if shadow else "active"
        with self._lock:
            row = self._row(self._db, ref)
            rev_id, approvals = row["id"], self._approval_count(self._db, row["id"])
            current = self._slot(self._db, slot)
            author = row["author"]
        needs_approval = not shadow or self.shadow_requires_approval
        if current == rev_id:
            raise self._refuse(actor, "publish", "already_published", f"{rev_id} is already the {slot} revision", row)
        if needs_approval and approvals < self.required_approvals and not emergency:
            raise self._refuse(
                actor,
                "publish",
                "not_approved",
                f"{rev_id} has {approvals} of {self.required_approvals} required approval(s);"
                " get a second officer's approval or use --emergency --reason TEXT",
                row,
            )
        bundle = self._build(
            rev_id,
            signer,
            SHADOW_SCOPE if shadow else ACTIVE_SCOPE,
            author=author,
            approvals=approvals,
            published_by=actor,
            **({"emergency_reason": emergency_reason} if emergency else {}),
        )
        with self._tx() as db:
            row = self._row(db, rev_id)
            if self._slot(db, slot) != current:
                raise PolicyError(f"the {slot} revision changed while publishing; retry")
            now = self._now()
            if shadow:
                if current is not None:
                    back = "approved" if self._approval_count(db, current) >= self.required_approvals else "proposed"
                    db.execute("UPDATE revisions SET status = ? WHERE id = ? AND status = 'shadow'", (back, current))
                db.execute("UPDATE revisions SET status = 'shadow', shadow_bundle = ? WHERE id = ?", (bundle, rev_id))
                self._set_slot(db, "shadow", rev_id, "publish_shadow", actor)
                self._event(
                    db, "policy.publish", actor, row=row,
                    detail={"mode": "shadow", "replaces": current, "approvals": approvals},
                )
            else:
                if current is not None:
                    db.execute("UPDATE revisions SET status = 'superseded' WHERE id = ?", (current,))
                if self._slot(db, "shadow") == rev_id:
                    self._set_slot(db, "shadow", None, "promote", actor)
                db.execute(
                    "UPDATE revisions SET status = 'published', bundle = ?, published_at = ?,"
                    " published_by = ?, emergency_reason = COALESCE(?, emergency_reason) WHERE id = ?",
                    (bundle, now, actor, emergency_reason if emergency else None, rev_id),
                )
                self._set_slot(db, "active", rev_id, "emergency_publish" if emergency else "publish", actor)
                emergency_unapproved = emergency and approvals < self.required_approvals
                self._event(
                    db,
                    "policy.emergency_publish" if emergency else "policy.publish",
                    actor,
                    row=row,
                    reason=emergency_reason if emergency else None,
                    detail={
                        "mode": "active",
                        "replaces": current,
                        "approvals": approvals,
                        "unapproved": emergency_unapproved,
                    },
                )
            return self._revision(db, self._row(db, rev_id))

    def rollback(self, ref: str | None = None, *, actor: str, reason: str | None = None) -> Revision:
        """Re-activate a previously enforced revision (default: the one before the active one)."""
        refusal: tuple[str, str, sqlite3.Row | None, str | None] | None = None
        with self._tx() as db:
            current = self._slot(db, "active")
            target_row = None
            if current is None:
                refusal = ("nothing_active", "no active revision to roll back", None, None)
            elif ref is not None:
                target_row = self._row(db, ref)
                if target_row["id"] == current:
                    refusal = ("already_active", f"{current} is already active", target_row, None)
                elif target_row["published_at"] is None or target_row["bundle"] is None:
                    refusal = (
                        "never_published",
                        f"{target_row['id']} was never enforced; rollback only restores published revisions",
                        target_row,
                        None,
                    )
            else:
                for pub in db.execute(
                    "SELECT p.revision FROM publications p JOIN revisions r ON r.id = p.revision"
                    " WHERE p.slot = 'active' AND p.revision != ? AND r.status = 'superseded'"
                    " ORDER BY p.seq DESC",
                    (current,),
                ):
                    target_row = self._row(db, pub["revision"])
                    break
                if target_row is None:
                    refusal = (
                        "no_previous",
                        f"no earlier published revision to roll back to from {current}",
                        None,
                        current,
                    )
            if refusal is None and target_row is not None and current is not None:
                current_row = self._row(db, current)
                db.execute("UPDATE revisions SET status = 'rolled_back' WHERE id = ?", (current,))
                db.execute("UPDATE revisions SET status = 'published' WHERE id = ?", (target_row["id"],))
                if self._slot(db, "shadow") == target_row["id"]:
                    self._set_slot(db, "shadow", None, "promote", actor)
                self._set_slot(db, "active", target_row["id"], "rollback", actor)
                self._event(
                    db, "policy.rollback", actor, row=target_row, reason=reason,
                    detail={"mode": "active", "from": current, "from_digest": current_row["digest"]},
                )
                return self._revision(db, self._row(db, target_row["id"]))
        assert refusal is not None
        code, message, row, rev = refusal
        raise self._refuse(actor, "rollback", code, message, row, rev)

    def clear_shadow(self, *, actor: str, reason: str | None = None) -> str:
        """Stop shadow evaluation; returns the revision that was in shadow."""
        with self._tx() as db:
            current = self._slot(db, "shadow")
            if current is not None:
                back = "approved" if self._approval_count(db, current) >= self.required_approvals else "proposed"
                db.execute("UPDATE revisions SET status = ? WHERE id = ? AND status = 'shadow'", (back, current))
                self._set_slot(db, "shadow", None, "clear", actor)
                self._event(
                    db, "policy.rollback", actor, row=self._row(db, current), reason=reason, detail={"mode": "shadow"}
                )
                return current
        raise self._refuse(actor, "rollback", "no_shadow", "no shadow revision to clear")


def ensure_initial_revision(
    store: RevisionStore,
    pack: PolicyPack,
    signer: BundleSigner | Ed25519PrivateKey,
    actor: str = "system",
) -> PublishedBundle:
    """On first start, publish ``pack`` (the default pack) as r1; afterwards a no-op.

    The bootstrap publish is recorded as ``policy.publish`` with reason ``bootstrap`` and needs no
    approval: there is no policy yet to protect, and the default pack ships reviewed with the code.
    """
    existing = store.active()
    if existing is not None:
        return existing
    with store._tx() as db:  # one transaction: concurrent first starts publish once
        if store._slot(db, "active") is None:
            row = db.execute("SELECT * FROM revisions WHERE digest = ? ORDER BY seq LIMIT 1", (pack.digest,)).fetchone()
            if row is None:
                rev_id = store._insert_revision(
                    db, pack, parent=None, author=actor, message="initial default policy pack"
                )
                store._event(db, "policy.propose", actor, revision=rev_id, digest=pack.digest, reason="bootstrap")
            else:
                rev_id = row["id"]
            bundle = build_bundle(
                pack_from_files(dict(pack.files), revision=rev_id),
                rev_id,
                as_signer(signer),
                issued_at=int(store._clock().timestamp()),
                metadata={"author": actor, "approvals": 0, "published_by": actor, "bootstrap": True},
            )
            db.execute(
                "UPDATE revisions SET status = 'published', bundle = ?, published_at = ?, published_by = ?"
                " WHERE id = ?",
                (bundle, store._now(), actor, rev_id),
            )
            store._set_slot(db, "active", rev_id, "bootstrap", actor)
            store._event(
                db,
                "policy.publish",
                actor,
                revision=rev_id,
                digest=pack.digest,
                reason="bootstrap",
                detail={"mode": "active", "replaces": None, "approvals": 0},
            )
    active = store.active()
    assert active is not None
    return active
