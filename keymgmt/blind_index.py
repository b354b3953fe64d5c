"""Blind indexes for exact lookups on encrypted columns (national ID, bank account).

``index = "<key version>:" + hex(HMAC-SHA256(key, label | dataset | column | normalised value)[:n])``

The key is the provider's HMAC key (role "blind index"); dataset and column are in the MAC input so
equal values in two columns do not produce linkable indexes. The key version prefix lets a rotated
blind-index key coexist with old rows until they are re-indexed (lookups try every trusted version).

Length trade-off (``length`` bytes kept, default 8 = 64 bits). For N rows, the expected number of
accidental collisions is ≈ N² / 2^(8·length+1):

====== ================================ =================================================
bytes  50 M rows (a national register)  what it means
====== ================================ =================================================
 4     ≈ 2.9 × 10^5 colliding pairs     lookups return a few candidates; more deniability
 8     ≈ 6.8 × 10^-5                    lookups return exactly the row (the default)
 16    ≈ 0                              no practical difference from 8; longer column
====== ================================ =================================================

A shorter index leaks less (several citizens share each value, like AWS DB-ESDK beacons) at the
price of candidate rows the caller must filter after an authorised decryption; the adapter always
confirms a match by comparing the decrypted value when it has a decision, and returns all candidate
primary keys otherwise. An index never reveals the value without the key, but it does reveal
equality between rows of the same column — that is its purpose.
"""

from __future__ import annotations

import hmac
import unicodedata
from collections.abc import Callable
from typing import Protocol

from keymgmt.errors import KeyMgmtError
from keymgmt.keyring import KeyInfo

_LABEL = b"ztcp-blind-index\x00"
# citizen_ref (docs/design.md, Contracts) is computed by contracts.citizen_ref with the same HMAC key role.


class HmacKeySource(Protocol):
    """What blind indexes need of a key provider (every :class:`keymgmt.KeyProvider` is one)."""

    def info(self, name: str) -> KeyInfo: ...

    def hmac_key(self, name: str, version: int | None = None) -> bytes: ...


def normalise(value: str) -> str:
    """Default normaliser for identifiers: NFKC, no spaces or hyphens, upper case."""
    v = unicodedata.normalize("NFKC", value).strip().upper()
    return v.replace(" ", "").replace("-", "")


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


class BlindIndexer:
    """Computes blind indexes with one HMAC key version; cheap to call per row."""

    def __init__(
        self,
        key: bytes,
        version: int,
        *,
        length: int = 8,
        normaliser: Callable[[str], str] = normalise,
    ) -> None:
        if len(key) < 16:
            raise KeyMgmtError("blind-index key must be at least 128 bits")
        if not 4 <= length <= 32:
            raise KeyMgmtError("blind-index length must be between 4 and 32 bytes")
        self.version = version
        self.length = length
        self._key = bytes(key)
        self._norm = normaliser

    def compute(self, dataset: str, column: str, value: str) -> str:
        msg = _LABEL + _lp(dataset.encode()) + _lp(column.encode()) + _lp(self._norm(value).encode())
        return f"{self.version}:{hmac.digest(self._key, msg, 'sha256')[: self.length].hex()}"

    def column_indexer(self, dataset: str, column: str) -> Callable[[str], str]:
        """A fast ``value -> index`` for one column (bulk jobs)."""
        head = _LABEL + _lp(dataset.encode()) + _lp(column.encode())
        key, prefix, length, norm, mac = self._key, f"{self.version}:", self.length, self._norm, hmac.digest

        def index(value: str) -> str:
            v = norm(value).encode()
            return prefix + mac(key, head + len(v).to_bytes(4, "big") + v, "sha256")[:length].hex()

        return index

    def matches(self, dataset: str, column: str, value: str, index: str) -> bool:
        return hmac.compare_digest(self.compute(dataset, column, value), index)


def index_version(index: str) -> int | None:
    head, sep, _ = index.partition(":") if isinstance(index, str) else ("", "", "")
    return int(head) if sep and head.isdigit() else None


class BlindIndexKeys:
    """The blind-index HMAC key of a provider: the current version for writes, every trusted one for
    lookups. Key material is fetched once and kept in memory (see the vault provider's note)."""

    def __init__(self, provider: HmacKeySource, key_name: str = "blind-index", *, length: int = 8,
                 normaliser: Callable[[str], str] = normalise) -> None:
        self.provider = provider
        self.key_name = key_name
        self.length = length
        self.normaliser = normaliser
        self._by_version: dict[int, BlindIndexer] = {}
        self._current: int | None = None

    def refresh(self) -> None:
        self._refresh()

    def _refresh(self) -> int:
        """Load the trusted versions; returns the current (latest) one."""
        info = self.provider.info(self.key_name)
        keep: dict[int, BlindIndexer] = {}
        for v in range(info.min_decryption_version, info.latest_version + 1):
            keep[v] = self._by_version.get(v) or BlindIndexer(
                self.provider.hmac_key(self.key_name, v),
                v, length=self.length, normaliser=self.normaliser,
            )
        self._by_version = keep
        self._current = info.latest_version
        return info.latest_version

    def current(self) -> BlindIndexer:
        version = self._current if self._current is not None else self._refresh()
        return self._by_version[version]

    def trusted(self) -> list[BlindIndexer]:
        if self._current is None:
            self.refresh()
        return list(self._by_version.values())
