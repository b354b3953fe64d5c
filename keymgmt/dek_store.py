"""The key table: wrapped data keys (DEKs) kept inside the protected database.

Table ``ztcp_deks``::

    dek_id         TEXT PK   16 hex chars (8 random bytes, also in every ciphertext)
    dataset        TEXT      the dataset the DEK encrypts (a DEK never crosses datasets)
    kek_name       TEXT      KEK in the key provider
    kek_version    INT       version of the KEK that wrapped ``wrapped`` (rewrap moves it forward)
    origin_kek_version INT   KEK version current when the DEK was made (rotation retires the DEK
                             for new writes; rows under it are moved by ``reencrypt``)
    wrapped        TEXT      ``ztcp:vN:…`` or ``vault:vN:…``
    provider       TEXT      local | vault
    state          TEXT      active | retired   (retired = no new writes; still decrypts)
    uses_reserved  BIGINT    encryptions handed out so far (reserved in blocks by writers)
    max_uses       BIGINT    cap on encryptions, well below 2^32 (random 96-bit nonces)
    created_at, retired_at   ISO-8601 UTC

Writers reserve blocks of encryptions with a conditional UPDATE (``uses_reserved + n <= max_uses``),
so the cap holds across processes without a round trip per field; a crashed writer merely wastes
the rest of its block.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

deks = sa.Table(
    "ztcp_deks",
    metadata,
    sa.Column("dek_id", sa.String(16), primary_key=True),
    sa.Column("dataset", sa.String(200), nullable=False, index=True),
    sa.Column("kek_name", sa.String(128), nullable=False),
    sa.Column("kek_version", sa.Integer, nullable=False),
    sa.Column("origin_kek_version", sa.Integer, nullable=False),
    sa.Column("wrapped", sa.Text, nullable=False),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("state", sa.String(10), nullable=False, default="active"),
    sa.Column("uses_reserved", sa.BigInteger, nullable=False, default=0),
    sa.Column("max_uses", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("retired_at", sa.String(40)),
)


@dataclass(frozen=True)
class DekRow:
    dek_id: str
    dataset: str
    kek_name: str
    kek_version: int
    origin_kek_version: int
    wrapped: str
    provider: str
    state: str
    uses_reserved: int
    max_uses: int
    created_at: str
    retired_at: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class DekStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def ensure_schema(self) -> None:
        metadata.create_all(self.engine, checkfirst=True)

    @staticmethod
    def _row(r: sa.Row[Any]) -> DekRow:
        return DekRow(**r._mapping)

    def get(self, dek_id: str) -> DekRow | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(deks).where(deks.c.dek_id == dek_id)).first()
        return self._row(r) if r else None

    def all(self, dataset: str | None = None) -> list[DekRow]:
        q = sa.select(deks).order_by(deks.c.created_at)
        if dataset is not None:
            q = q.where(deks.c.dataset == dataset)
        with self.engine.connect() as c:
            return [self._row(r) for r in c.execute(q)]

    def insert(self, *, dataset: str, kek_name: str, kek_version: int, wrapped: str, provider: str,
               max_uses: int, reserve: int) -> DekRow:
        dek_id = os.urandom(8).hex()
        row = DekRow(
            dek_id=dek_id, dataset=dataset, kek_name=kek_name, kek_version=kek_version,
            origin_kek_version=kek_version,
            wrapped=wrapped, provider=provider, state="active", uses_reserved=reserve,
            max_uses=max_uses, created_at=_now(), retired_at=None,
        )
        with self.engine.begin() as c:
            c.execute(deks.insert().values(**dataclasses.asdict(row)))
        return row

    def active_candidates(self, dataset: str, kek_name: str) -> list[DekRow]:
        q = (
            sa.select(deks)
            .where(deks.c.dataset == dataset, deks.c.kek_name == kek_name, deks.c.state == "active")
            .order_by(deks.c.created_at.desc())
        )
        with self.engine.connect() as c:
            return [self._row(r) for r in c.execute(q)]

    def reserve(self, dek_id: str, n: int) -> int:
        """Reserve up to ``n`` encryptions of an active DEK; returns how many were granted (0 = spent)."""
        for _ in range(8):  # optimistic: another writer may reserve between our read and update
            with self.engine.begin() as c:
                q = sa.select(deks.c.uses_reserved, deks.c.max_uses, deks.c.state)
                row = c.execute(q.where(deks.c.dek_id == dek_id)).first()
                if row is None or row.state != "active":
                    return 0
                grant: int = min(n, row.max_uses - row.uses_reserved)
                if grant <= 0:
                    return 0
                res = c.execute(
                    deks.update()
                    .where(deks.c.dek_id == dek_id, deks.c.uses_reserved == row.uses_reserved,
                           deks.c.state == "active")
                    .values(uses_reserved=row.uses_reserved + grant)
                )
                if res.rowcount == 1:
                    return grant
        return 0

    def retire(self, dek_ids: Sequence[str]) -> int:
        if not dek_ids:
            return 0
        with self.engine.begin() as c:
            res = c.execute(
                deks.update()
                .where(deks.c.dek_id.in_(list(dek_ids)), deks.c.state == "active")
                .values(state="retired", retired_at=_now())
            )
            return res.rowcount

    def replace_wrapped(self, dek_id: str, old_wrapped: str, new_wrapped: str, new_version: int) -> bool:
        """Swap a DEK's wrapped form only if nobody changed it meanwhile (rewrap is idempotent)."""
        with self.engine.begin() as c:
            res = c.execute(
                deks.update()
                .where(deks.c.dek_id == dek_id, deks.c.wrapped == old_wrapped)
                .values(wrapped=new_wrapped, kek_version=new_version)
            )
            return res.rowcount == 1

    def count_below(self, kek_name: str, version: int) -> int:
        with self.engine.connect() as c:
            return c.execute(
                sa.select(sa.func.count())
                .select_from(deks)
                .where(deks.c.kek_name == kek_name, deks.c.kek_version < version)
            ).scalar_one()

    def retired_or_older(self, dataset: str, kek_name: str, latest: int) -> set[str]:
        """DEKs whose rows ``reencrypt`` must move: retired, or made under an older KEK version."""
        q = sa.select(deks.c.dek_id).where(
            deks.c.dataset == dataset,
            sa.or_(deks.c.state != "active", deks.c.origin_kek_version < latest, deks.c.kek_name != kek_name),
        )
        with self.engine.connect() as c:
            return {r[0] for r in c.execute(q)}
