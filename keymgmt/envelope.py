"""Envelope encryption of fields: DEKs from the provider's datakey, wrapped in the key table, cached.

- New writes of a dataset use its active DEK. A DEK stops taking new writes (state ``retired``) when
  its encryption budget is spent (``max_uses``, default 2^30: random 96-bit nonces stay far from the
  2^32 NIST SP 800-38D limit, collision odds ≈ 2^-37) or when the KEK was rotated since the DEK was
  made (so "rotate → new writes use a new DEK", checked every ``kek_check_interval`` seconds).
- Unwrapped DEKs are cached in memory for ``cache_ttl`` seconds. When the provider is unreachable and
  a DEK is not cached, decryption fails closed with :class:`ProviderUnavailable`; the next call after
  the provider returns succeeds (nothing is latched).
"""

from __future__ import annotations

import binascii
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keymgmt.ciphertext import (
    DEK_ID_LEN,
    FORMAT_VERSION,
    NONCE_LEN,
    PREFIX,
    aad_prefix,
    parse_ciphertext,
)
from keymgmt.dek_store import DekRow, DekStore
from keymgmt.errors import CiphertextError, KeyMgmtError
from keymgmt.provider import KeyProvider

DEFAULT_KEK = "data-kek"  # the same name server/bootstrap.py gives the system KEK
DEFAULT_MAX_USES = 1 << 30
_PACK_LEN = struct.Struct(">I").pack
_HEADER_END = 1 + DEK_ID_LEN
_NONCE_END = _HEADER_END + NONCE_LEN
_MIN_RAW = _NONCE_END + 16


def _b64(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False)


@dataclass
class _Writer:
    dek_id: bytes
    aead: AESGCM
    remaining: int
    kek_version: int
    checked_at: float
    header: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.header = bytes([FORMAT_VERSION]) + self.dek_id


class Envelope:
    """Encrypts and decrypts protected fields of one protected database."""

    def __init__(
        self,
        provider: KeyProvider,
        engine: sa.Engine,
        kek_name: str = DEFAULT_KEK,
        *,
        max_uses: int = DEFAULT_MAX_USES,
        reserve_block: int = 1 << 16,
        cache_ttl: float = 300.0,
        kek_check_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= max_uses <= (1 << 31):
            raise KeyMgmtError("max_uses must be between 1 and 2^31 (well below the 2^32 GCM limit)")
        self.provider = provider
        self.kek_name = kek_name
        self.store = DekStore(engine)
        self.store.ensure_schema()
        self.max_uses = max_uses
        self.reserve_block = max(1, min(reserve_block, max_uses))
        self.cache_ttl = cache_ttl
        self.kek_check_interval = kek_check_interval
        self._clock = clock
        self._cache: dict[str, tuple[AESGCM, float, str]] = {}
        self._writers: dict[str, _Writer] = {}
        self._lock = threading.RLock()
        self._aad_prefixes: dict[tuple[str, str], bytes] = {}

    # -- writers -----------------------------------------------------------------------------

    def _kek_latest(self) -> int:
        return self.provider.info(self.kek_name).latest_version

    def _take(self, dataset: str, n: int) -> tuple[_Writer, int]:
        """A writer for ``dataset`` and how many of the ``n`` wanted encryptions it grants (≥ 1)."""
        with self._lock:
            w = self._writers.get(dataset)
            now = self._clock()
            if w is not None and now - w.checked_at >= self.kek_check_interval:
                if self._kek_latest() > w.kek_version:
                    self.store.retire([w.dek_id.hex()])
                    w = None
                else:
                    w.checked_at = now
            if w is None or w.remaining <= 0:
                w = self._new_writer(dataset)
                self._writers[dataset] = w
            k = min(n, w.remaining)
            w.remaining -= k
            return w, k

    def _new_writer(self, dataset: str) -> _Writer:
        latest = self._kek_latest()
        block = self.reserve_block
        for row in self.store.active_candidates(dataset, self.kek_name):
            if row.origin_kek_version < latest:
                # Made while an older KEK version was current: no new writes (rotation semantics).
                self.store.retire([row.dek_id])
                continue
            granted = self.store.reserve(row.dek_id, block)
            if granted == 0:
                self.store.retire([row.dek_id])  # encryption budget spent
                continue
            return _Writer(bytes.fromhex(row.dek_id), self._aead_for_row(row), granted, latest, self._clock())
        dek, wrapped = self.provider.generate_datakey(self.kek_name)
        version = self.provider.wrapped_version(wrapped)
        row = self.store.insert(
            dataset=dataset, kek_name=self.kek_name, kek_version=version, wrapped=wrapped,
            provider=self.provider.provider_name, max_uses=self.max_uses, reserve=block,
        )
        aead = AESGCM(dek)
        self._cache[row.dek_id] = (aead, self._clock() + self.cache_ttl, dataset)
        return _Writer(bytes.fromhex(row.dek_id), aead, block, version, self._clock())

    def _prefix(self, dataset: str, column: str) -> bytes:
        key = (dataset, column)
        p = self._aad_prefixes.get(key)
        if p is None:
            p = self._aad_prefixes[key] = aad_prefix(dataset, column)
        return p

    # -- encryption ------------------------------------------------------------------------------

    def encrypt(self, dataset: str, column: str, pk: object, value: str) -> str:
        return self.encrypt_many(dataset, column, [(pk, value)])[0]

    def encrypt_many(self, dataset: str, column: str, items: Sequence[tuple[object, str]]) -> list[str]:
        """Encrypt values of one column; the hot path of bulk jobs (one random read per batch)."""
        out: list[str] = []
        prefix = self._prefix(dataset, column)
        i = 0
        n = len(items)
        while i < n:
            w, k = self._take(dataset, n - i)
            aead, header = w.aead, w.header
            enc = aead.encrypt
            nonces = os.urandom(NONCE_LEN * k)
            hp = header + prefix
            append = out.append
            pack = _PACK_LEN
            b64 = binascii.b2a_base64
            pfx = PREFIX.encode()
            off = 0
            for pk, value in items[i:i + k]:
                if type(value) is not str:
                    raise KeyMgmtError(f"column {column!r}: only text values can be protected")
                nonce = nonces[off:off + NONCE_LEN]
                off += NONCE_LEN
                pkb = str(pk).encode()
                ct = enc(nonce, value.encode(), hp + pack(len(pkb)) + pkb)
                append((pfx + b64(header + nonce + ct, newline=False)).decode("ascii"))
            i += k
        return out

    def encrypt_row(self, dataset: str, pk: object, values: dict[str, str | None]) -> tuple[str, dict[str, str | None]]:
        """Encrypt all fields of one row under one DEK; returns (dek_id, {column: ciphertext|None})."""
        cols = list(values)
        ((dek, cts),) = self.encrypt_rows(dataset, cols, [(pk, [values[c] for c in cols])])
        return dek, dict(zip(cols, cts, strict=True))

    def encrypt_rows(
        self, dataset: str, columns: Sequence[str], rows: Sequence[tuple[object, Sequence[str | None]]]
    ) -> list[tuple[str, list[str | None]]]:
        """Encrypt many rows; every field of a row is under the same DEK. Returns (dek_id, ciphertexts)
        per row, ciphertexts in ``columns`` order (None stays None). The bulk jobs' hot path."""
        ncol = len(columns)
        if ncol == 0:
            raise KeyMgmtError("no columns to encrypt")
        hps_base = [self._prefix(dataset, c) for c in columns]
        out: list[tuple[str, list[str | None]]] = []
        i, n = 0, len(rows)
        while i < n:
            w, k = self._take(dataset, (n - i) * ncol)
            take_rows = k // ncol
            if take_rows == 0:
                w.remaining = 0  # too little budget left for a whole row: spend it, use a new DEK
                continue
            with self._lock:
                w.remaining += k - take_rows * ncol  # hand back a partial row's grant
            header = w.header
            dek = w.dek_id.hex()
            enc = w.aead.encrypt
            hps = [header + p for p in hps_base]
            nonces = os.urandom(NONCE_LEN * take_rows * ncol)
            j = 0
            for pk, values in rows[i:i + take_rows]:
                pkb = str(pk).encode()
                pkp = _PACK_LEN(len(pkb)) + pkb
                cts: list[str | None] = []
                for c in range(ncol):
                    v = values[c]
                    if v is None:
                        cts.append(None)
                    elif type(v) is not str:
                        raise KeyMgmtError(f"column {columns[c]!r}: only text values can be protected")
                    else:
                        nonce = nonces[j:j + NONCE_LEN]
                        ct = enc(nonce, v.encode(), hps[c] + pkp)
                        cts.append(PREFIX + _b64(header + nonce + ct).decode("ascii"))
                    j += NONCE_LEN
                out.append((dek, cts))
            i += take_rows
        return out

    def current_dek(self, dataset: str) -> str:
        """The DEK id new writes of ``dataset`` use now (creating one if needed)."""
        w, _ = self._take(dataset, 0)
        return w.dek_id.hex()

    def retire_writer(self, dataset: str) -> None:
        """Forget this process's writer (tests and admin jobs force a fresh choice)."""
        with self._lock:
            self._writers.pop(dataset, None)

    # -- decryption ------------------------------------------------------------------------------

    def _aead_for_row(self, row: DekRow) -> AESGCM:
        hit = self._cache.get(row.dek_id)
        if hit and hit[1] > self._clock():
            return hit[0]
        aead = AESGCM(self.provider.unwrap(row.kek_name, row.wrapped))
        self._cache[row.dek_id] = (aead, self._clock() + self.cache_ttl, row.dataset)
        return aead

    def _aead_for(self, dek_hex: str, dataset: str) -> AESGCM:
        hit = self._cache.get(dek_hex)
        if hit and hit[1] > self._clock():
            if hit[2] != dataset:
                raise CiphertextError("protected value was made for another dataset")
            return hit[0]
        row = self.store.get(dek_hex)
        if row is None:
            raise CiphertextError(f"protected value names an unknown data key {dek_hex}")
        if row.dataset != dataset:
            raise CiphertextError("protected value was made for another dataset")
        return self._aead_for_row(row)

    def prefetch(self, dek_ids: Iterable[str]) -> None:
        """Unwrap many DEKs in one provider batch (bulk jobs)."""
        now = self._clock()
        missing = [d for d in set(dek_ids) if not (d in self._cache and self._cache[d][1] > now)]
        rows = [r for r in (self.store.get(d) for d in missing) if r is not None]
        by_kek: dict[str, list[DekRow]] = {}
        for r in rows:
            by_kek.setdefault(r.kek_name, []).append(r)
        for kek, rs in by_kek.items():
            plain = self.provider.unwrap_many(kek, [r.wrapped for r in rs])
            for r, p in zip(rs, plain, strict=True):
                self._cache[r.dek_id] = (AESGCM(p), now + self.cache_ttl, r.dataset)

    def decrypt(self, dataset: str, column: str, pk: object, text: str) -> str:
        # Hot path (bulk verify/reencrypt, reads): inline parse; the slow path explains failures.
        if not isinstance(text, str) or not text.startswith(PREFIX):
            parse_ciphertext(text)  # raises a precise CiphertextError
        try:
            raw = binascii.a2b_base64(text[4:], strict_mode=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) < _MIN_RAW or raw[0] != FORMAT_VERSION:
            parse_ciphertext(text)
            raise CiphertextError("protected value is malformed")
        dek_hex = raw[1:_HEADER_END].hex()
        hit = self._cache.get(dek_hex)
        if hit is not None and hit[1] > self._clock() and hit[2] == dataset:
            aead = hit[0]
        else:
            aead = self._aead_for(dek_hex, dataset)
        pkb = str(pk).encode()
        try:
            aad = raw[:_HEADER_END] + self._prefix(dataset, column) + _PACK_LEN(len(pkb)) + pkb
            plain = aead.decrypt(raw[_HEADER_END:_NONCE_END], raw[_NONCE_END:], aad)
        except InvalidTag:
            raise CiphertextError(
                f"protected value of {dataset}.{column} fails authentication "
                "(tampered, or copied from another row/column)"
            ) from None
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise CiphertextError("protected value does not hold text") from None

    @staticmethod
    def dek_of(text: str) -> str:
        return parse_ciphertext(text).dek_hex

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._writers.clear()

    # -- rewrap ------------------------------------------------------------------------------

    def rewrap(self, batch: int = 200, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Move every wrapped DEK of this KEK to its newest version. Returns (rewrapped, total)."""
        latest = self._kek_latest()
        todo = [r for r in self.store.all() if r.kek_name == self.kek_name and r.kek_version < latest]
        done = 0
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            new = self.provider.rewrap_many(self.kek_name, [r.wrapped for r in chunk])
            for r, w in zip(chunk, new, strict=True):
                if self.store.replace_wrapped(r.dek_id, r.wrapped, w, self.provider.wrapped_version(w)):
                    done += 1
            if progress:
                progress(len(chunk))
        return done, len(todo)


assert DEK_ID_LEN == 8  # the key table's 16-hex dek_id depends on it
