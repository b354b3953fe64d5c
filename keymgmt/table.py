"""The encrypted-table adapter (SQLAlchemy Core, SQLite and PostgreSQL).

A protected table is an ordinary table plus three kinds of columns added by :meth:`prepare`:

- each protected column holds ``ze1:…`` ciphertext in place of the plaintext (widened to TEXT on
  PostgreSQL so ciphertext fits where a VARCHAR(n) held the value);
- ``<column>_bidx`` for columns with a blind index (indexed, for exact lookups);
- ``ztcp_dek``: the per-row state. NULL = the protected columns still hold plaintext; otherwise the
  id of the DEK every protected column of the row is encrypted under. Ciphertext, blind indexes and
  ``ztcp_dek`` always change in one UPDATE, so a row is never half-written, and jobs select rows by
  this state (never by sniffing values), so a row is never encrypted twice.

The table's spec (dataset, pk, protected and indexed columns) is registered in ``ztcp_tables`` so
admin jobs (status, verify, reencrypt, retire) find it without repeating flags.

Reading plaintext is not offered here: it goes through :class:`keymgmt.ProtectedReader`, which
demands a decision token and a provenance record first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from keymgmt.blind_index import BlindIndexKeys
from keymgmt.ciphertext import parse_ciphertext
from keymgmt.dek_store import metadata
from keymgmt.envelope import Envelope
from keymgmt.errors import CiphertextError, KeyMgmtError, TableJobError

STATE_COLUMN = "ztcp_dek"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

registry = sa.Table(
    "ztcp_tables",
    metadata,
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("registered_at", sa.String(40), nullable=False),
)


def _ident(name: str, what: str) -> str:
    if not isinstance(name, str) or not _IDENT.match(name) or name.lower().startswith("ztcp_"):
        raise TableJobError(f"invalid {what} name {name!r}")
    return name


class TableSpec(BaseModel):
    """Which columns of a table are protected, and which carry a blind index."""

    model_config = ConfigDict(frozen=True)

    table: str
    dataset: str = ""
    pk: str
    columns: tuple[str, ...]
    blind_index: tuple[str, ...] = ()
    citizen_ref_column: str | None = None
    bi_length: int = Field(default=8, ge=4, le=32)

    @model_validator(mode="after")
    def _check(self) -> TableSpec:
        _ident(self.table, "table")
        _ident(self.pk, "primary key column")
        if not self.columns:
            raise TableJobError("at least one protected column is required")
        for c in self.columns:
            _ident(c, "column")
        if self.pk in self.columns:
            raise TableJobError("the primary key cannot be a protected column (it is bound in the AAD)")
        if len(set(self.columns)) != len(self.columns):
            raise TableJobError("protected columns are listed twice")
        extra = set(self.blind_index) - set(self.columns)
        if extra:
            raise TableJobError(f"blind-index columns must be protected columns: {', '.join(sorted(extra))}")
        if self.citizen_ref_column is not None:
            _ident(self.citizen_ref_column, "citizen_ref column")
            if self.citizen_ref_column in self.columns:
                raise TableJobError("the citizen_ref column holds a reference, not a protected value")
        if not self.dataset:
            object.__setattr__(self, "dataset", self.table)
        return self

    @staticmethod
    def bidx_column(column: str) -> str:
        return f"{column}_bidx"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def registered_specs(engine: sa.Engine) -> list[TableSpec]:
    if not sa.inspect(engine).has_table("ztcp_tables"):
        return []
    with engine.connect() as c:
        return [TableSpec.model_validate_json(r.spec) for r in c.execute(sa.select(registry))]


def load_spec(engine: sa.Engine, table: str) -> TableSpec:
    for s in registered_specs(engine):
        if s.table == table:
            return s
    raise TableJobError(f"table {table!r} is not a registered protected table (run keys encrypt-table first)")


class EncryptedTable:
    def __init__(
        self, engine: sa.Engine, spec: TableSpec, envelope: Envelope, blind: BlindIndexKeys | None = None
    ) -> None:
        if spec.blind_index and blind is None:
            raise TableJobError("this table has blind-index columns: a blind-index key is required")
        self.engine = engine
        self.spec = spec
        self.envelope = envelope
        self.blind = blind
        self._table: sa.Table | None = None
        self._fetch_stmt: sa.Select[Any] | None = None
        self._prepared: TableSpec | None = None  # the spec prepare() last applied through this object

    @classmethod
    def load(
        cls, engine: sa.Engine, table: str, envelope: Envelope, blind: BlindIndexKeys | None = None
    ) -> EncryptedTable:
        return cls(engine, load_spec(engine, table), envelope, blind)

    @property
    def dataset(self) -> str:
        return self.spec.dataset

    def blind_keys(self) -> BlindIndexKeys:
        """The blind-index keys, which a table with blind-index columns always has (``__init__``)."""
        if self.blind is None:
            raise TableJobError(f"table {self.spec.table!r} has no blind-index key")
        return self.blind

    # -- schema ------------------------------------------------------------------------------

    @property
    def table(self) -> sa.Table:
        if self._table is None:
            self._table = sa.Table(self.spec.table, sa.MetaData(), autoload_with=self.engine)
        return self._table

    def prepare(self) -> None:
        """Add state/blind-index columns and indexes, widen columns, register the spec. Idempotent.

        Once applied through this object, a second call with the same spec returns at once: every job
        starts with it, and its schema inspection and the table's reflection cost ~10 ms, which a job
        run over and over on a small table (the demo's bulk-decrypt incident) would pay thousands of times.
        """
        if self._prepared == self.spec:
            return
        metadata.create_all(self.engine, checkfirst=True)
        insp = sa.inspect(self.engine)
        if not insp.has_table(self.spec.table):
            raise TableJobError(f"no table {self.spec.table!r} in the protected database")
        cols = {c["name"]: c for c in insp.get_columns(self.spec.table)}
        missing = [c for c in (self.spec.pk, *self.spec.columns) if c not in cols]
        if self.spec.citizen_ref_column and self.spec.citizen_ref_column not in cols:
            missing.append(self.spec.citizen_ref_column)
        if missing:
            raise TableJobError(f"table {self.spec.table!r} has no column {', '.join(missing)}")
        for c in self.spec.columns:
            t = cols[c]["type"]
            if not isinstance(t, sa.String | sa.Text):
                raise TableJobError(
                    f"column {c!r} is {t}; only text columns can be protected (store values as text)"
                )
        q = self.engine.dialect.identifier_preparer.quote
        tbl = q(self.spec.table)
        pg = self.engine.dialect.name == "postgresql"
        with self.engine.begin() as conn:
            if STATE_COLUMN not in cols:
                conn.execute(sa.text(f"ALTER TABLE {tbl} ADD COLUMN {STATE_COLUMN} VARCHAR(16)"))
            conn.execute(sa.text(
                f"CREATE INDEX IF NOT EXISTS {q('ix_' + self.spec.table + '_' + STATE_COLUMN)} "
                f"ON {tbl} ({STATE_COLUMN})"
            ))
            for c in self.spec.blind_index:
                b = self.spec.bidx_column(c)
                if b not in cols:
                    conn.execute(sa.text(f"ALTER TABLE {tbl} ADD COLUMN {q(b)} VARCHAR(80)"))
                conn.execute(sa.text(
                    f"CREATE INDEX IF NOT EXISTS {q('ix_' + self.spec.table + '_' + b)} ON {tbl} ({q(b)})"
                ))
            if pg:
                for c in self.spec.columns:
                    if not isinstance(cols[c]["type"], sa.Text):
                        conn.execute(sa.text(f"ALTER TABLE {tbl} ALTER COLUMN {q(c)} TYPE TEXT"))
            exists = conn.execute(
                sa.select(registry.c.spec).where(registry.c.table_name == self.spec.table)
            ).first()
            body = self.spec.model_dump_json()
            if exists is None:
                conn.execute(registry.insert().values(table_name=self.spec.table, spec=body,
                                                      registered_at=_now()))
            elif exists.spec != body:
                old = TableSpec.model_validate_json(exists.spec)
                if old.dataset != self.spec.dataset or old.pk != self.spec.pk or set(old.columns) - set(
                    self.spec.columns
                ):
                    raise TableJobError(
                        f"table {self.spec.table!r} is registered with a different spec "
                        f"(dataset {old.dataset}, pk {old.pk}, columns {', '.join(old.columns)})"
                    )
                conn.execute(registry.update().where(registry.c.table_name == self.spec.table)
                             .values(spec=body))
        self._table = None
        self._fetch_stmt = None
        self._prepared = self.spec

    # -- writes ---------------------------------------------------------------------------------

    def encrypt_values(self, pk: object, values: dict[str, Any]) -> dict[str, Any]:
        """The column values to store for a row: ciphertexts, blind indexes and the row state."""
        protected = {c: values.get(c) for c in self.spec.columns}
        for c, v in protected.items():
            if v is not None and not isinstance(v, str):
                raise KeyMgmtError(f"column {c!r}: only text values can be protected")
        dek, cts = self.envelope.encrypt_row(self.dataset, pk, protected)
        out: dict[str, Any] = dict(cts)
        if self.spec.blind_index:
            bi = self.blind_keys().current()
            for c in self.spec.blind_index:
                v = protected[c]
                out[self.spec.bidx_column(c)] = None if v is None else bi.compute(self.dataset, c, v)
        out[STATE_COLUMN] = dek
        return out

    def stored_columns(self) -> list[str]:
        """Columns written by :meth:`encrypt_rows`, in its tuple order."""
        return [*self.spec.columns, *(self.spec.bidx_column(c) for c in self.spec.blind_index), STATE_COLUMN]

    def encrypt_rows(self, rows: Sequence[tuple[Any, Sequence[str | None]]]) -> list[tuple[Any, ...]]:
        """Bulk form of :meth:`encrypt_values`: ``(pk, values in spec.columns order)`` → tuples of
        :meth:`stored_columns` values (ciphertexts, blind indexes, state)."""
        enc = self.envelope.encrypt_rows(self.dataset, self.spec.columns, rows)
        if not self.spec.blind_index:
            return [(*cts, dek) for dek, cts in enc]
        bi = self.blind_keys().current()
        idx = [(self.spec.columns.index(c), bi.column_indexer(self.dataset, c)) for c in self.spec.blind_index]
        out: list[tuple[Any, ...]] = []
        for (_, values), (dek, cts) in zip(rows, enc, strict=True):
            out.append((*cts, *(None if (v := values[i]) is None else f(v) for i, f in idx), dek))
        return out

    def insert(self, row: dict[str, Any]) -> None:
        self.insert_many([row])

    def insert_many(self, rows: Iterable[dict[str, Any]]) -> None:
        prepared = []
        for row in rows:
            if self.spec.pk not in row:
                raise KeyMgmtError(f"row lacks its primary key {self.spec.pk!r}")
            for k in row:
                if k == STATE_COLUMN or k.endswith("_bidx"):
                    raise KeyMgmtError(f"column {k!r} is managed by ztcp")
            prepared.append({**row, **self.encrypt_values(row[self.spec.pk], row)})
        if prepared:
            with self.engine.begin() as c:
                c.execute(self.table.insert(), prepared)

    def update(self, pk: object, values: dict[str, Any]) -> None:
        """Update a row. Touching any protected column re-encrypts the whole row under the current
        DEK (inside this process; no plaintext is returned), so ``ztcp_dek`` stays truthful."""
        t = self.table
        plain_updates = {k: v for k, v in values.items() if k not in self.spec.columns}
        for k in plain_updates:
            if k == self.spec.pk or k == STATE_COLUMN or k.endswith("_bidx"):
                raise KeyMgmtError(f"column {k!r} cannot be updated here")
        prot_updates = {k: v for k, v in values.items() if k in self.spec.columns}
        with self.engine.begin() as c:
            row = c.execute(sa.select(t).where(t.c[self.spec.pk] == pk).with_for_update()).mappings().first()
            if row is None:
                raise KeyMgmtError(f"no record {pk!r} in {self.spec.table}")
            new: dict[str, Any] = dict(plain_updates)
            if prot_updates:
                current = self._decrypt_row(row, self.spec.columns) if row[STATE_COLUMN] else {
                    col: row[col] for col in self.spec.columns
                }
                current.update(prot_updates)
                new.update(self.encrypt_values(pk, current))
            if new:
                c.execute(t.update().where(t.c[self.spec.pk] == pk).values(**new))

    # -- reads (no plaintext) -------------------------------------------------------------------

    def find(self, column: str, value: str) -> list[Any]:
        """Primary keys of rows whose ``column`` equals ``value``, through the blind index."""
        if column not in self.spec.blind_index:
            raise KeyMgmtError(f"column {column!r} has no blind index")
        candidates = [bi.compute(self.dataset, column, value) for bi in self.blind_keys().trusted()]
        t = self.table
        q = sa.select(t.c[self.spec.pk]).where(t.c[self.spec.bidx_column(column)].in_(candidates))
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(q.order_by(t.c[self.spec.pk]))]

    def fetch_row(self, pk: object) -> dict[str, Any] | None:
        """The stored row (protected columns as ciphertext)."""
        if self._fetch_stmt is None:  # built once: statement construction costs more than the query
            t = self.table
            self._fetch_stmt = sa.select(t).where(t.c[self.spec.pk] == sa.bindparam("pk"))
        with self.engine.connect() as c:
            r = c.execute(self._fetch_stmt, {"pk": pk}).mappings().first()
        return dict(r) if r else None

    # -- internal: used by ProtectedReader and admin jobs only ----------------------------------

    def _decrypt_row(self, row: Any, fields: Sequence[str]) -> dict[str, str | None]:
        pk = row[self.spec.pk]
        state = row[STATE_COLUMN]
        out: dict[str, str | None] = {}
        for f in fields:
            v = row[f]
            if v is None:
                out[f] = None
                continue
            if state is None:
                raise CiphertextError(f"record {self.spec.table} row is not encrypted yet")
            if parse_ciphertext(v).dek_hex != state:
                raise CiphertextError(f"column {f!r} is not under the row's data key (inconsistent row)")
            out[f] = self.envelope.decrypt(self.dataset, f, pk, v)
        return out
