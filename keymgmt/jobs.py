"""Admin jobs on protected tables: encrypt-table, reencrypt, status, verify, retire checks.

Crash safety (kill -9 at any moment): each batch is one database transaction that writes the rows'
ciphertexts, blind indexes and ``ztcp_dek`` state together with the job journal line
(``ztcp_jobs``). Rows are selected by state (``ztcp_dek IS NULL`` for encrypt-table; "under a
retired/old DEK or a stale blind-index key" for reencrypt) and every UPDATE repeats that condition
on the row, so a re-run skips what was committed, redoes what was rolled back, and never encrypts a
row twice — whether the earlier run was killed, or another writer changed the row meanwhile.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from keymgmt.audit import KeyAuditLog
from keymgmt.blind_index import index_version
from keymgmt.dek_store import deks, metadata
from keymgmt.errors import CiphertextError, KeyMgmtError, RetireRefused, TableJobError
from keymgmt.provider import KeyProvider
from keymgmt.table import STATE_COLUMN, EncryptedTable, registered_specs

Progress = Callable[[int], None]
Params = list[tuple[Any, ...]]  # one batch of DB-API parameter tuples for executemany

jobs = sa.Table(
    "ztcp_jobs",
    metadata,
    sa.Column("job_key", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("table_name", sa.String(128), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("rows_done", sa.BigInteger, nullable=False, default=0),
    sa.Column("runs", sa.Integer, nullable=False, default=0),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
)


@dataclass
class JobResult:
    kind: str
    table: str
    rows_changed: int
    rows_pending_at_start: int
    rows_total: int
    seconds: float
    journal_rows_done: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.rows_changed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class VerifyReport:
    table: str
    rows: int = 0
    ok: int = 0
    plaintext: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failed_pks: list[Any] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _journal_begin(conn: sa.Connection, kind: str, table: str) -> None:
    key = f"{kind}:{table}"
    row = conn.execute(sa.select(jobs).where(jobs.c.job_key == key)).first()
    now = _now()
    if row is None:
        conn.execute(jobs.insert().values(job_key=key, kind=kind, table_name=table, status="running",
                                          rows_done=0, runs=1, started_at=now, updated_at=now))
    else:
        fresh = row.status == "done"
        conn.execute(jobs.update().where(jobs.c.job_key == key).values(
            status="running", runs=jobs.c.runs + 1, updated_at=now, finished_at=None,
            **({"rows_done": 0, "started_at": now} if fresh else {}),
        ))


def _journal_advance(conn: sa.Connection, kind: str, table: str, n: int) -> None:
    conn.execute(jobs.update().where(jobs.c.job_key == f"{kind}:{table}")
                 .values(rows_done=jobs.c.rows_done + n, updated_at=_now()))


def _journal_finish(conn: sa.Connection, kind: str, table: str) -> int:
    conn.execute(jobs.update().where(jobs.c.job_key == f"{kind}:{table}")
                 .values(status="done", finished_at=_now(), updated_at=_now()))
    rows_done: int = conn.execute(
        sa.select(jobs.c.rows_done).where(jobs.c.job_key == f"{kind}:{table}")
    ).scalar_one()
    return rows_done


def job_journal(engine: sa.Engine, table: str | None = None) -> list[dict[str, Any]]:
    if not sa.inspect(engine).has_table("ztcp_jobs"):
        return []
    q = sa.select(jobs)
    if table:
        q = q.where(jobs.c.table_name == table)
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(q)]


def _raw_update_sql(et: EncryptedTable, guard: str) -> str:
    """UPDATE … SET <stored columns> WHERE pk = ? AND <guard>, in the driver's paramstyle: bulk jobs
    hand tuples straight to the DB-API ``executemany`` (SQLAlchemy's per-row parameter processing
    costs more than the encryption)."""
    q = et.engine.dialect.identifier_preparer.quote
    ph = "?" if et.engine.dialect.paramstyle == "qmark" else "%s"
    sets = ", ".join(f"{q(c)} = {ph}" for c in et.stored_columns())
    return f"UPDATE {q(et.spec.table)} SET {sets} WHERE {q(et.spec.pk)} = {ph} AND {guard.format(ph=ph)}"  # noqa: S608


def _executemany(conn: sa.Connection, sql: str, params: Params) -> int:
    driver = conn.connection.driver_connection
    if driver is None:  # only a closed or invalidated connection has none
        raise TableJobError("the database connection is closed")
    cur = driver.cursor()
    try:
        cur.executemany(sql, params)
        n = cur.rowcount
    finally:
        cur.close()
    return n if n is not None and n >= 0 else len(params)


class _BatchWriter:
    """Commits batches on a second thread while the caller encrypts the next one.

    The database driver releases the GIL while it executes and syncs, so writing batch *i* overlaps
    with encrypting batch *i+1*. Each batch is still one transaction (rows + journal line); at most
    ``depth`` batches wait in memory; the first failure stops the job and is re-raised.
    """

    def __init__(self, engine: sa.Engine, sql: str, kind: str, table: str,
                 progress: Progress | None, depth: int = 2) -> None:
        self.engine, self.sql, self.kind, self.table, self.progress = engine, sql, kind, table, progress
        self.changed = 0
        self.error: BaseException | None = None
        self._q: queue.Queue[Params | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name=f"ztcp-{kind}-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain: the job is failing
            try:
                with self.engine.begin() as c:
                    n = _executemany(c, self.sql, item)
                    _journal_advance(c, self.kind, self.table, n)
                self.changed += n
                if self.progress:
                    self.progress(len(item))
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
                # First line only: drivers put row values in their DETAIL lines.
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
                err = TableJobError(f"the database refused a {self.kind} batch of {self.table} "
                                    f"({type(exc).__name__}: {first}); committed batches stay done, re-run to resume")
                err.__cause__ = exc
                self.error = err

    def submit(self, params: Params) -> None:
        if self.error is not None:
            self.close()
        self._q.put(params)

    def close(self) -> int:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        if self.error is not None:
            raise self.error
        return self.changed


def _count(engine: sa.Engine, q: sa.Select[Any]) -> int:
    with engine.connect() as c:
        return int(c.execute(q).scalar_one())


def _row_counts(et: EncryptedTable, where: sa.ColumnElement[bool]) -> tuple[int, int]:
    """(rows in the table, rows matching ``where``)."""
    rows = sa.select(sa.func.count()).select_from(et.table)
    return _count(et.engine, rows), _count(et.engine, rows.where(where))


def _pages(et: EncryptedTable, columns: list[Any], where: sa.ColumnElement[bool] | None,
           batch: int) -> Iterator[Sequence[sa.RowMapping]]:
    """Rows in primary-key order, ``batch`` at a time (keyset pagination: each page starts after the
    last key seen, so rows updated behind us are not revisited and no OFFSET scan grows)."""
    pkc = et.table.c[et.spec.pk]
    last: Any = None
    while True:
        q = sa.select(*columns)
        if where is not None:
            q = q.where(where)
        if last is not None:
            q = q.where(pkc > last)
        with et.engine.connect() as c:
            rows = c.execute(q.order_by(pkc).limit(batch)).mappings().all()
        if not rows:
            return
        yield rows
        last = rows[-1][et.spec.pk]


def _run_batches(
    et: EncryptedTable,
    *,
    name: str,
    kind: str,
    where: sa.ColumnElement[bool],
    update_sql: str,
    columns: list[Any],
    to_params: Callable[[Sequence[sa.RowMapping]], Params],
    batch: int,
    progress: Progress | None,
    total: int,
    pending: int,
    audit: KeyAuditLog | None,
    actor: str,
    audit_reason: str | None = None,
) -> JobResult:
    """The resumable job shared by encrypt-table and reencrypt (``name``; ``kind`` keys its journal
    line): journal, keyset-paginated batches of rows still matching ``where`` (as mappings), a writer
    committing each, then one ``key.reencrypt`` audit record counting the rows changed."""
    started = time.perf_counter()
    with et.engine.begin() as c:
        _journal_begin(c, kind, et.spec.table)
    writer = _BatchWriter(et.engine, update_sql, kind, et.spec.table, progress)
    try:
        for rows in _pages(et, columns, where, batch):
            writer.submit(to_params(rows))
            if writer.error is not None:
                break
    finally:
        changed = writer.close()
    with et.engine.begin() as c:
        done = _journal_finish(c, kind, et.spec.table)
    if audit is not None:
        audit.record(type="key.reencrypt", actor=actor, key_name=et.envelope.kek_name,
                     dataset=et.dataset, count=changed, reason=audit_reason)
    if changed:
        scrub_freed_plaintext(et.engine)
    return JobResult(name, et.spec.table, changed, pending, total, time.perf_counter() - started, done)


def scrub_freed_plaintext(engine: sa.Engine) -> None:
    """After rows were rewritten as ciphertext, their old plaintext must not linger on disk.

    SQLite: the engine's connections run with ``secure_delete`` (freed cells are zeroed), and the
    WAL, which still holds the page images written before, is checkpointed and truncated.
    PostgreSQL keeps dead tuples until VACUUM: run ``VACUUM`` on the table after encrypting it
    (keymgmt/README.md)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def encrypt_table(
    et: EncryptedTable,
    *,
    batch: int = 2000,
    progress: Progress | None = None,
    on_total: Callable[[int, int], None] | None = None,
    audit: KeyAuditLog | None = None,
    actor: str = "cli",
) -> JobResult:
    """Encrypt the protected columns of every plaintext row in place. Resumable and idempotent."""
    et.prepare()
    t = et.table
    state = t.c[STATE_COLUMN]
    total, pending = _row_counts(et, state.is_(None))
    if on_total:
        on_total(total, total - pending)
    pk, cols = et.spec.pk, et.spec.columns

    def to_params(rows: Sequence[sa.RowMapping]) -> Params:
        stored = et.encrypt_rows([(r[pk], [r[c] for c in cols]) for r in rows])
        return [(*vals, r[pk]) for r, vals in zip(rows, stored, strict=True)]

    return _run_batches(
        et, name="encrypt-table", kind="encrypt", where=state.is_(None),
        update_sql=_raw_update_sql(et, f"{STATE_COLUMN} IS NULL"), columns=[t.c[pk], *(t.c[x] for x in cols)],
        to_params=to_params, batch=batch, progress=progress, total=total, pending=pending,
        audit=audit, actor=actor, audit_reason="encrypt-table")


def _reencrypt_filter(et: EncryptedTable) -> tuple[sa.ColumnElement[bool], set[str], int | None]:
    env = et.envelope
    env.current_dek(et.dataset)  # makes sure new writes (and moved rows) use a current DEK
    latest = env.provider.info(env.kek_name).latest_version
    old = env.store.retired_or_older(et.dataset, env.kek_name, latest)
    t = et.table
    state = t.c[STATE_COLUMN]
    conds: list[sa.ColumnElement[bool]] = []
    if old:
        conds.append(state.in_(sorted(old)))
    bi_version: int | None = None
    if et.spec.blind_index:
        blind = et.blind_keys()
        blind.refresh()
        bi_version = blind.current().version
        for c in et.spec.blind_index:
            b = t.c[et.spec.bidx_column(c)]
            conds.append(sa.and_(state.is_not(None), b.is_not(None), sa.not_(b.like(f"{bi_version}:%"))))
    return (sa.or_(*conds) if conds else sa.false()), old, bi_version


def reencrypt(
    et: EncryptedTable,
    *,
    batch: int = 2000,
    progress: Progress | None = None,
    on_total: Callable[[int, int], None] | None = None,
    audit: KeyAuditLog | None = None,
    actor: str = "cli",
) -> JobResult:
    """Move rows off retired / pre-rotation DEKs and stale blind-index keys. Resumable, idempotent."""
    et.prepare()
    t = et.table
    pk, cols = et.spec.pk, et.spec.columns
    cond, old, _ = _reencrypt_filter(et)
    total, pending = _row_counts(et, cond)
    if on_total:
        on_total(pending, 0)
    et.envelope.prefetch(old)

    def to_params(rows: Sequence[sa.RowMapping]) -> Params:
        plain = [et._decrypt_row(r, cols) for r in rows]
        stored = et.encrypt_rows([(r[pk], [p[c] for c in cols]) for r, p in zip(rows, plain, strict=True)])
        return [(*vals, r[pk], r[STATE_COLUMN]) for r, vals in zip(rows, stored, strict=True)]

    return _run_batches(
        et, name="reencrypt", kind="reencrypt", where=cond, update_sql=_raw_update_sql(et, f"{STATE_COLUMN} = {{ph}}"),
        columns=[t], to_params=to_params, batch=batch, progress=progress, total=total, pending=pending,
        audit=audit, actor=actor)


def table_status(et: EncryptedTable) -> dict[str, Any]:
    """Rows per DEK and KEK version, plaintext rows, blind-index key versions, job journal."""
    et.prepare()
    t = et.table
    state = t.c[STATE_COLUMN]
    with et.engine.connect() as c:
        per_dek: dict[str | None, int] = dict(c.execute(sa.select(state, sa.func.count()).group_by(state)).all())
        dek_rows = {r.dek_id: r for r in c.execute(sa.select(deks).where(deks.c.dataset == et.dataset))}
        bidx: dict[str, dict[str, int]] = {}
        for col in et.spec.blind_index:
            b = t.c[et.spec.bidx_column(col)]
            counts: dict[str, int] = {}
            for value, in c.execute(sa.select(b).where(b.is_not(None))):
                v = str(index_version(value))
                counts[v] = counts.get(v, 0) + 1
            bidx[col] = counts
    plaintext = per_dek.pop(None, 0)
    by_dek = []
    by_version: dict[int, int] = {}
    for dek_id, n in sorted(per_dek.items()):
        row = dek_rows.get(dek_id)
        by_dek.append({
            "dek_id": dek_id, "rows": n,
            "kek_name": row.kek_name if row else None,
            "kek_version": row.kek_version if row else None,
            "origin_kek_version": row.origin_kek_version if row else None,
            "state": row.state if row else "unknown",
        })
        if row:
            by_version[row.origin_kek_version] = by_version.get(row.origin_kek_version, 0) + n
    return {
        "table": et.spec.table,
        "dataset": et.dataset,
        "rows": plaintext + sum(per_dek.values()),
        "plaintext_rows": plaintext,
        "rows_by_dek": by_dek,
        "rows_by_origin_kek_version": {str(k): v for k, v in sorted(by_version.items())},
        "data_keys": [
            {"dek_id": r.dek_id, "kek_version": r.kek_version, "origin_kek_version": r.origin_kek_version,
             "state": r.state, "uses_reserved": r.uses_reserved, "max_uses": r.max_uses}
            for r in dek_rows.values()
        ],
        "blind_index_versions": bidx,
        "jobs": job_journal(et.engine, et.spec.table),
    }


def verify_table(
    et: EncryptedTable,
    *,
    batch: int = 2000,
    progress: Progress | None = None,
    on_total: Callable[[int, int], None] | None = None,
    audit: KeyAuditLog | None = None,
    actor: str = "cli",
    max_failed_pks: int = 20,
) -> VerifyReport:
    """Every row decrypts under its DEK and its blind indexes match. Plaintext never leaves."""
    et.prepare()
    t = et.table
    total = _count(et.engine, sa.select(sa.func.count()).select_from(t))
    if on_total:
        on_total(total, 0)
    report = VerifyReport(et.spec.table)
    trusted = {bi.version: bi for bi in et.blind.trusted()} if et.blind else {}

    def fail(kind: str, pk: Any) -> None:
        report.failures[kind] = report.failures.get(kind, 0) + 1
        if len(report.failed_pks) < max_failed_pks:
            report.failed_pks.append(pk)

    for rows in _pages(et, [t], None, batch):
        deks_here = {r[STATE_COLUMN] for r in rows if r[STATE_COLUMN]}
        with contextlib.suppress(KeyMgmtError):  # an unusable DEK shows up as per-row failures below
            et.envelope.prefetch(deks_here)
        for r in rows:
            report.rows += 1
            pk = r[et.spec.pk]
            if r[STATE_COLUMN] is None:
                report.plaintext += 1
                continue
            try:
                plain = et._decrypt_row(r, et.spec.columns)
            except CiphertextError:
                fail("decrypt_failed", pk)
                continue
            except KeyMgmtError:
                fail("key_unavailable", pk)
                continue
            ok = True
            for col in et.spec.blind_index:
                idx = r[et.spec.bidx_column(col)]
                value = plain[col]
                if value is None:
                    ok = ok and idx is None
                    continue
                bi = trusted.get(index_version(idx) or -1) if idx else None
                if bi is None or not bi.matches(et.dataset, col, value, idx):
                    ok = False
            if ok:
                report.ok += 1
            else:
                fail("blind_index_mismatch", pk)
        if progress:
            progress(len(rows))
    if audit is not None:
        audit.record(type="key.bulk_decrypt", actor=actor, key_name=et.envelope.kek_name,
                     dataset=et.dataset, count=report.rows - report.plaintext, reason="verify")
    return report


def retire_dependencies(provider: KeyProvider, name: str, n: int, engine: sa.Engine | None) -> dict[str, int]:
    """What still depends on versions of ``name`` below ``n`` in one database, by table (empty = safe)."""
    info = provider.info(name)
    if not 1 <= n <= info.latest_version:
        raise KeyMgmtError(f"min decryption version for {name!r} must be between 1 and {info.latest_version}")
    found: dict[str, int] = {}
    if engine is None:
        return found
    insp = sa.inspect(engine)
    specs = registered_specs(engine)
    table_of = {spec.dataset: spec.table for spec in specs}
    if info.type == "aes256-gcm96" and insp.has_table("ztcp_deks"):
        with engine.connect() as c:
            wrapped_old = c.execute(sa.select(deks.c.dataset, sa.func.count()).where(
                deks.c.kek_name == name, deks.c.kek_version < n).group_by(deks.c.dataset)).all()
            old_origin = [r[0] for r in c.execute(
                sa.select(deks.c.dek_id).where(deks.c.kek_name == name, deks.c.origin_kek_version < n))]
        for dataset, count in wrapped_old:
            found[f"table {table_of.get(dataset, dataset)}: data keys wrapped under an older version "
                  "(run: ztcp keys rewrap)"] = int(count)  # "table T: what" — retire puts the count after T
        if old_origin:
            for spec in specs:
                t = sa.Table(spec.table, sa.MetaData(), autoload_with=engine)
                rows = _count(engine, sa.select(sa.func.count()).select_from(t)
                              .where(t.c[STATE_COLUMN].in_(old_origin)))
                if rows:
                    found[f"table {spec.table}: rows under data keys made before version {n} "
                          "(run: ztcp keys reencrypt)"] = rows
    if info.type == "hmac":
        for spec in specs:
            t = sa.Table(spec.table, sa.MetaData(), autoload_with=engine)
            rows = 0
            for col in spec.blind_index:
                b = t.c[spec.bidx_column(col)]
                for v in range(1, n):
                    rows += _count(engine, sa.select(sa.func.count()).select_from(t).where(b.like(f"{v}:%")))
            if rows:
                found[f"table {spec.table}: blind indexes under an older version (run: ztcp keys reencrypt)"] = rows
    return found


def retire(
    provider: KeyProvider, name: str, n: int, engines: sa.Engine | Mapping[str, sa.Engine] | None,
    audit: KeyAuditLog | None = None, actor: str = "cli",
) -> None:
    """Raise the minimum decryption version of ``name`` to ``n`` — refused while anything in any of
    ``engines`` (label → engine: every database the key inventory knows) depends on an older version,
    or while one of them cannot be checked."""
    if engines is None or isinstance(engines, sa.Engine):
        engines = {"": engines} if engines is not None else {}
    problems: list[str] = []
    counted = 0
    for label, engine in engines.items():
        where = f"database {label}, " if label else ""
        try:
            for what, count in retire_dependencies(provider, name, n, engine).items():
                table, _, detail = what.partition(": ")
                problems.append(f"{where}{table}: {count} {detail}")
                counted += count
        except sa.exc.SQLAlchemyError as exc:
            # Fail closed: data we cannot see may depend on the versions being retired.
            problems.append(f"{where}cannot be checked ({type(exc).__name__}: make it reachable, e.g. its "
                            "password in PGPASSFILE, or give its URL with --db)")
    if not engines:
        retire_dependencies(provider, name, n, None)  # still checks that n is in range
    if problems:
        if audit is not None:
            audit.record(type="key.retire", actor=actor, key_name=name, key_version=n,
                         count=counted, reason="refused")
        raise RetireRefused(f"cannot retire versions of {name!r} below {n}: " + "; ".join(problems))
    provider.set_min_decryption_version(name, n)
    if audit is not None:
        audit.record(type="key.retire", actor=actor, key_name=name, key_version=n)
