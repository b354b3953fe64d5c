"""Integrity of every log this installation keeps: the chained logs (decision log, key audit, alert
history) and the provenance ledger, verified together by ``ztcp audit verify --all``.

Heads and prune marks are signed with the ledger's checkpoint key (:func:`server.ledger.ledger_from_settings`:
the local key, or Vault/OpenBao transit) as C2SP signed notes whose origin is the ledger's origin
with ``#<log>`` appended, so a log head can never pass for a ledger checkpoint or the reverse.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import provenance
from contracts.chained_log import ChainedLog, LogVerdict, NoteOpener, PruneMark, note_body, note_origin, verify_log
from contracts.log_chain import ChainBreak, heads_match
from provenance.checkpoint import Checkpoint, open_checkpoint
from server.settings import Settings

LEDGER_LOG = "ledger"
ALERT_LOG = "alert_history"


@dataclass
class NoteKeys:
    """The signer and trusted keys of the ledger, for heads and prune marks."""

    ledger: provenance.Ledger

    @property
    def origin(self) -> str:
        return self.ledger.origin

    def sign(self, log: str, position: int, link: bytes, prune_after: int | None = None) -> str:
        return self.ledger.signer.sign(note_body(note_origin(self.origin, log, prune_after), position, link))

    def mark_signer(self, log: str) -> Callable[[PruneMark], str]:
        return lambda m: self.sign(log, m.through, m.link, m.after)

    def opener(self) -> NoteOpener:
        def open_note(note: str, origin: str) -> tuple[int, bytes]:
            cp: Checkpoint = open_checkpoint(note, self.ledger.verifiers, origin)
            return cp.size, cp.root

        return open_note


def decision_store(settings: Settings, *, readonly: bool = True) -> Any | None:
    """The decision log's driver (PostgreSQL with ZTCP_DATABASE_URL, else ZTCP_HOME/decisions.db if present)."""
    from pdp.decision_log import open_store

    if settings.database_url:
        return open_store(settings.database_url, readonly=readonly)
    path = settings.ensure_home() / "decisions.db"
    return open_store(path, readonly=readonly) if path.exists() else None


def key_audit(settings: Settings) -> Any | None:
    import keymgmt

    path = keymgmt.default_audit_path(settings.ensure_home())
    return keymgmt.KeyAuditLog(path) if path.exists() else None


def alert_backend(settings: Settings) -> Any | None:
    """The alert store (its history is hash-chained: ``verify_history``), when there is one."""
    from server.siem import DB_NAME, open_alerts

    if not settings.database_url and not (settings.ensure_home() / DB_NAME).exists():
        return None
    return open_alerts(settings)


class AlertHeads:
    """Signed heads for the alert history. siem_rules keeps the history's head (and prune mark) in
    ``siem_alert_chain``, unsigned: rewriting that row after deleting the newest history rows would
    pass ``verify_history``. A signed head beside it (``ztcp_alert_history_heads``, in the same
    database: siem.db or PostgreSQL) makes that truncation visible, as for the other logs."""

    chain_name = ALERT_LOG
    _DDL = ("CREATE TABLE IF NOT EXISTS ztcp_alert_history_heads (seq BIGINT PRIMARY KEY, note TEXT NOT NULL, "
            "at DOUBLE PRECISION NOT NULL)")

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        with backend.transaction():
            backend._x(self._DDL)

    def chain_head(self) -> tuple[int, bytes, int]:
        """(head seq, head link, prune seq) as the alert store records them."""
        rows = self.backend._q("SELECT seq, link, prune_seq FROM siem_alert_chain WHERE id = 1")
        if not rows:
            return 0, b"", 0
        seq, lk, prune = rows[0]
        return int(seq), bytes(lk), int(prune)

    def signed_heads(self) -> list[tuple[int, str]]:
        return [(int(s), str(n)) for s, n in self.backend._q(
            "SELECT seq, note FROM ztcp_alert_history_heads ORDER BY seq")]

    def add_signed_head(self, position: int, note: str) -> None:
        with self.backend.transaction():
            self.backend._x("INSERT INTO ztcp_alert_history_heads VALUES (?, ?, ?) ON CONFLICT (seq) DO NOTHING",
                            (position, note, time.time()))

    def check(self, open_note: NoteOpener, origin: str) -> tuple[ChainBreak | None, int]:
        """Every signed head must still be in the history with the same link (or be pruned)."""
        _, _, prune = self.chain_head()
        newest = self.backend._q("SELECT coalesce(max(seq), 0) FROM siem_alert_history")[0][0]
        heads = self.signed_heads()
        for seq, note in heads:
            try:
                pos, lk = open_note(note, note_origin(origin, ALERT_LOG))
            except Exception:  # noqa: BLE001 - a note that does not open is a bad head
                return ChainBreak(seq, "its signed head does not verify"), len(heads)
            if pos != seq:
                return ChainBreak(seq, "its signed head names another position"), len(heads)
            if pos <= prune:
                continue
            row = self.backend._q("SELECT link FROM siem_alert_history WHERE seq = ?", (pos,))
            if not row:
                return ChainBreak(int(newest) + 1, f"records up to the signed head at {pos} are missing "
                                                   "(the log was truncated)"), len(heads)
            if not heads_match(bytes(row[0][0]), lk):
                return ChainBreak(pos, "it differs from the signed head for this position (rewritten history)"), \
                    len(heads)
        return None, len(heads)


def chained_logs(settings: Settings, *, readonly: bool = True) -> list[ChainedLog]:
    logs = [decision_store(settings, readonly=readonly), key_audit(settings)]
    return [log for log in logs if log is not None]


def _close(log: object) -> None:
    close = getattr(log, "close", None)
    if callable(close):
        close()


def sign_heads(settings: Settings, ledger: provenance.Ledger | None = None) -> dict[str, int]:
    """Sign the newest position of every chained log not signed yet (leader only; after SIEM runs).
    Returns the positions signed, per log. Opens the ledger (its key) only when there is work."""
    from server.ledger import ledger_from_settings

    logs = chained_logs(settings, readonly=False)
    signed: dict[str, int] = {}
    own = False
    try:
        todo = []
        for lg in logs:
            position, link = lg.chain_head()
            if position > max((h.position for h in lg.signed_heads()), default=0):
                todo.append((lg, position, link))
        if not todo and not _alert_head_unsigned(settings):
            return signed
        if ledger is None:
            ledger, own = ledger_from_settings(settings), True
        keys = NoteKeys(ledger)
        for lg, position, link in todo:
            lg.add_signed_head(position, keys.sign(lg.chain_name, position, link))
            signed[lg.chain_name] = position
        return signed | _sign_alert_head(settings, keys)
    finally:
        for lg in logs:
            _close(lg)
        if own and ledger is not None:
            ledger.close()


def _alert_head_unsigned(settings: Settings) -> bool:
    backend = alert_backend(settings)
    if backend is None:
        return False
    try:
        heads = AlertHeads(backend)
        seq = heads.chain_head()[0]
        return seq > max((s for s, _ in heads.signed_heads()), default=0)
    finally:
        backend.close()


def _sign_alert_head(settings: Settings, keys: NoteKeys) -> dict[str, int]:
    backend = alert_backend(settings)
    if backend is None:
        return {}
    try:
        heads = AlertHeads(backend)
        seq, link, _ = heads.chain_head()
        if seq <= max((s for s, _ in heads.signed_heads()), default=0):
            return {}
        heads.add_signed_head(seq, keys.sign(ALERT_LOG, seq, link))
        return {ALERT_LOG: seq}
    finally:
        backend.close()


def verify_all(settings: Settings, *, full: bool = False) -> list[LogVerdict]:
    """Every log's verdict, the ledger's first. The walk stops at each log's first bad record."""
    from provenance.verify import verify_ledger
    from server.ledger import ledger_from_settings

    ledger = ledger_from_settings(settings)
    verdicts: list[LogVerdict] = []
    try:
        ledger.integrate_pending()
        try:
            report = verify_ledger(ledger, full=full)
            verdicts.append(LogVerdict(LEDGER_LOG, report.size, 0, report.checkpoints, None))
        except provenance.IntegrityError as exc:
            verdicts.append(LogVerdict(LEDGER_LOG, 0, 0, 0, ChainBreak(exc.seq if exc.seq is not None else 0,
                                                                       f"{exc.kind}: {exc}")))
        keys = NoteKeys(ledger)
        for log in chained_logs(settings):
            try:
                verdicts.append(verify_log(log, keys.opener(), keys.origin))
            finally:
                _close(log)
        alerts = alert_backend(settings)
        if alerts is not None:
            try:
                broken, count = alerts.verify_history()
                signed = 0
                if broken is None:
                    broken, signed = AlertHeads(alerts).check(keys.opener(), keys.origin)
                verdicts.append(LogVerdict(ALERT_LOG, count, 0, signed, broken))
            finally:
                alerts.close()
    finally:
        ledger.close()
    return verdicts
