"""The keyring of a cluster: the same sealed document as ``keyring.sealed``, kept in PostgreSQL.

With ``ZTCP_DATABASE_URL`` every replica must sign and verify with the same keys (a decision token or
a dev-IdP token from replica A verifies on B; every replica unwraps the same data keys). The sealed
document (:mod:`keymgmt.keyring`: AES-256-GCM under the master key, with a key-check value) is
stored as it is, one row per keyring in ``ztcp_bootstrap``; the database never holds a key
unsealed, so a copy of it (a backup, a read-only role) holds no usable key without the master key.

* **First start of a cluster**: the first replica to open the row seeds it from its home's
  ``keyring.sealed`` if it has one (an existing installation keeps its keys and its encrypted data),
  else with an empty keyring whose keys are created on first need, as at home.
* **Every later start** unseals the row with this replica's master key. A different master key is
  refused (:class:`~keymgmt.errors.MasterKeyMismatch`), and so is a home ``keyring.sealed`` holding
  a key whose material differs from the cluster's (:class:`~keymgmt.errors.KeyringDiffers`): that
  replica would otherwise sign tokens nobody else accepts, or have encrypted data nobody else reads.
* **Changes** (a key created on first need, a rotation) are one transaction under an advisory lock,
  re-reading the row first, as the file keyring does under ``flock``. Readers check the row's
  version at most every ``refresh_seconds`` and reload when it moved; a version or key they do not
  know yet is looked up at once. While the database does not answer, a replica keeps using the keys
  it has (it cannot learn of a rotation meanwhile); one that never loaded them cannot start.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from keymgmt.errors import KeyMgmtError, KeyringCorrupt, KeyringDiffers, KeyVersionUnavailable
from keymgmt.keyring import LocalKeyring, _KeyEntry, _KeyringState
from pdp.errors import StoreUnavailable
from pdp.storage import Migration, PgSession, migrate_pg, pg_connect, unavailable

if TYPE_CHECKING:
    import psycopg

COMPONENT = "bootstrap"
LOCK_BOOTSTRAP = 0x7A746370_0000_0010  # pdp.storage's key space: "ztcp", then the purpose

MIGRATIONS = (
    Migration(1, "ztcp_bootstrap: sealed documents by name, with a version readers poll", (
        """CREATE TABLE ztcp_bootstrap (
          name TEXT PRIMARY KEY,
          doc BYTEA NOT NULL,
          version BIGINT NOT NULL,
          updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
    )),
    Migration(2, "the key-check value beside each document: which master key sealed it, without unsealing", (
        "ALTER TABLE ztcp_bootstrap ADD COLUMN kcv TEXT",
        "UPDATE ztcp_bootstrap SET kcv = convert_from(doc, 'UTF8')::jsonb ->> 'kcv'",
    )),
)


class SharedKeyring(LocalKeyring):
    """A :class:`LocalKeyring` whose sealed document is the ``name`` row of ``ztcp_bootstrap``."""

    refresh_seconds = 1.0

    def __init__(self, url: str, name: str, master_key: bytes, *, hint: str = "ZTCP_MASTER_KEY / master.key") -> None:
        super().__init__(Path(name), master_key)
        self.name = name
        self.master_key_hint = hint
        self._session = PgSession(url, autocommit=False)
        self._conn: psycopg.Connection | None = None
        self._checked = float("-inf")
        self._generation = 0  # the highest sealed generation this process has seen

    def __repr__(self) -> str:
        return f"SharedKeyring({self.name!r}, <ZTCP_DATABASE_URL>)"

    @property
    def location(self) -> str:
        return f"of the cluster (ztcp_bootstrap row {self.name!r} in ZTCP_DATABASE_URL)"

    @classmethod
    def open_shared(cls, url: str, name: str, master_key: bytes, *, seed: Path | None = None,
                    hint: str = "ZTCP_MASTER_KEY / master.key") -> SharedKeyring:
        """Open the cluster's keyring ``name`` (seeding it from ``seed``, a home's sealed keyring
        file, if the cluster has none yet). Refuses a master key that does not unseal it, and a
        ``seed`` whose keys differ from the cluster's."""
        import psycopg

        try:
            conn = pg_connect(url)
        except psycopg.Error as exc:
            raise unavailable(exc) from exc
        try:
            migrate_pg(conn, COMPONENT, MIGRATIONS)
        except psycopg.Error as exc:
            raise unavailable(exc) from exc
        finally:
            conn.close()
        ring = cls(url, name, master_key, hint=hint)
        local: _KeyringState | None = None
        if seed is not None and seed.exists():
            # The home's file is unsealed with the same master key: a file this key does not open is
            # refused (naming the file), never copied into the cluster unread.
            home_ring = LocalKeyring(seed, master_key)
            home_ring.master_key_hint = hint
            local = home_ring._unseal(seed.read_bytes())
        with ring._locked():
            assert ring._conn is not None
            row = ring._conn.execute("SELECT version FROM ztcp_bootstrap WHERE name = %s", (name,)).fetchone()
            if row is None:
                first = ring._seal(local) if local is not None else ring._seal({"keys": {}})
                ring._store(first, insert=True)
            ring._load()
        if local is not None and row is not None:
            differing = _differing(local, ring._state)
            if differing:
                ring.close()
                raise KeyringDiffers(str(seed), differing)
        return ring

    # -- storage: the row instead of the file -------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex, self._session.use() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_BOOTSTRAP,))
            self._conn = conn
            try:
                yield
            finally:
                self._conn = None

    def _file_ident(self) -> tuple[int, int, int] | None:
        raise AssertionError("a shared keyring has no file")  # every caller is overridden below

    def _load(self) -> None:
        assert self._conn is not None, "under _locked()"
        row = self._conn.execute("SELECT doc, version FROM ztcp_bootstrap WHERE name = %s", (self.name,)).fetchone()
        if row is None:
            raise KeyMgmtError(f"keyring {self.location} is missing (was the table emptied?)")
        state = self._unseal(bytes(row[0]))
        generation = int(state.get("generation", 0))
        if generation < self._generation:
            raise KeyringCorrupt(f"keyring {self.location} went back to an older sealed state (generation "
                                 f"{generation} after {self._generation}): restored or replayed; not used")
        self._state, self._generation = state, generation
        self._ident = (int(row[1]), 0, 0)
        self._checked = time.monotonic()
        self._aead_cache.clear()

    def _write(self, state: _KeyringState) -> None:
        # A generation inside the seal: the row's version column is outside it, and a database
        # writer could put back an older sealed document (undoing a rotation or a retirement).
        state["generation"] = self._generation + 1
        self._store(self._seal(state), insert=False)
        self._generation = state["generation"]
        self._state = state
        self._aead_cache.clear()

    def _store(self, sealed: bytes, *, insert: bool) -> None:
        assert self._conn is not None, "under _locked()"
        if insert:
            row = self._conn.execute(
                "INSERT INTO ztcp_bootstrap (name, doc, version, kcv) VALUES (%s, %s, 1, %s) RETURNING version",
                (self.name, sealed, self._kcv)).fetchone()
        else:
            row = self._conn.execute(
                "UPDATE ztcp_bootstrap SET doc = %s, version = version + 1, kcv = %s, updated_at = now() "
                "WHERE name = %s RETURNING version", (sealed, self._kcv, self.name)).fetchone()
        assert row is not None
        self._ident = (int(row[0]), 0, 0)
        self._checked = time.monotonic()

    def _fresh(self, *, force: bool = False) -> _KeyringState:
        with self._mutex:
            if not force and time.monotonic() - self._checked < self.refresh_seconds:
                return self._state
            try:
                row = self._session.run(lambda conn: self._version(conn))
            except StoreUnavailable:
                if self._ident is None:
                    raise
                return self._state  # keep the keys we have (module notes); the next call tries again
            self._checked = time.monotonic()
            if row is not None and (int(row), 0, 0) != self._ident:
                with self._locked():
                    self._load()
            return self._state

    def _version(self, conn: psycopg.Connection) -> int | None:
        row = conn.execute("SELECT version FROM ztcp_bootstrap WHERE name = %s", (self.name,)).fetchone()
        conn.rollback()  # not autocommit: end the read's transaction, hold no snapshot between polls
        return int(row[0]) if row else None

    def _entry_in(self, state: _KeyringState, name: str) -> _KeyEntry:
        if name not in state["keys"] and state is self._state and self._conn is None:
            # A read of a key this replica has not seen: another may have created it a moment ago.
            state = self._fresh(force=True)
        return super()._entry_in(state, name)

    def _version_material(self, name: str, key_type: str, version: int | None, *,
                          for_decrypt: bool) -> tuple[int, bytes]:
        try:
            return super()._version_material(name, key_type, version, for_decrypt=for_decrypt)
        except KeyVersionUnavailable:
            # Another replica may have created or rotated it a moment ago: look before refusing.
            self._fresh(force=True)
            return super()._version_material(name, key_type, version, for_decrypt=for_decrypt)

    def close(self) -> None:
        self._session.close()


def _differing(local: _KeyringState, cluster: _KeyringState) -> list[str]:
    """Names of keys in ``local`` whose type or any version's material is not the cluster's."""
    out = []
    for name, entry in sorted(local["keys"].items()):
        theirs = cluster["keys"].get(name)
        if theirs is None or theirs["type"] != entry["type"]:
            out.append(name)
            continue
        for version, held in entry["versions"].items():
            other = theirs["versions"].get(version)
            if other is None or other["material"] != held["material"]:
                out.append(name)
                break
    return out
