"""Vault / OpenBao transit as the key provider (hvac).

- Auth: a token, or AppRole (role_id + secret_id; re-login once when the token is refused).
- Namespace and TLS options (CA bundle or ``verify=False`` for labs, client certificate for mTLS).
- Batches: transit's ``batch_input`` is chunked by item count and by total bytes, because servers cap
  a request's JSON strings (``max_request_json_strings``, 1000 by default on OpenBao) and size.
- Retries with exponential backoff on 429 / 5xx / connection errors; when they run out the call fails
  closed with :class:`ProviderUnavailable`. The hvac client keeps no connection state that a Vault
  restart invalidates, so the next call after Vault returns simply works ("recovers on its own").
- HMAC keys are created ``exportable`` so the blind-index key can be held in memory: a blind index
  is computed for every written row and every lookup, which a network round trip per value would
  make impractical for a table of tens of millions of citizens.
"""

from __future__ import annotations

import base64
import builtins
import functools
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar

import hvac
import hvac.exceptions as hv
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hvac.api.secrets_engines.transit import Transit

from keymgmt.errors import (
    CiphertextError,
    KeyExists,
    KeyMgmtError,
    KeyNotFound,
    KeyTypeMismatch,
    KeyVersionUnavailable,
    ProviderError,
    ProviderMisconfigured,
    ProviderUnavailable,
)
from keymgmt.keyring import KEY_TYPES, KeyInfo

T = TypeVar("T")
_WRAPPED_RE = re.compile(r"^vault:v([1-9][0-9]{0,9}):")
_RETRYABLE = (
    hv.RateLimitExceeded,
    hv.InternalServerError,
    hv.VaultDown,
    hv.BadGateway,
    requests.ConnectionError,
    requests.Timeout,
)


class _BatchResult(TypedDict, total=False):
    """One item of a transit batch answer: the result, or the error for that item."""

    ciphertext: str
    plaintext: str  # base64
    error: str


class VaultProvider:
    """Transit-backed :class:`keymgmt.KeyProvider`."""

    provider_name = "vault"

    def __init__(
        self,
        addr: str,
        *,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        namespace: str | None = None,
        mount: str = "transit",
        verify: bool | str = True,
        client_cert: tuple[str, str] | None = None,
        timeout: float = 5.0,
        retries: int = 4,
        backoff: float = 0.2,
        max_backoff: float = 3.0,
        batch_items: int = 400,
        batch_bytes: int = 4 * 1024 * 1024,
        approle_mount: str = "approle",
    ) -> None:
        if not token and not (role_id and secret_id):
            raise KeyMgmtError("vault provider needs a token or an AppRole role_id and secret_id")
        self.addr = addr
        self.mount = mount
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        # Each batch item costs two JSON strings (key + value); stay under the server's cap.
        self.batch_items = max(1, min(batch_items, 450))
        self.batch_bytes = batch_bytes
        self._role = (role_id, secret_id, approle_mount) if role_id and secret_id else None
        self._client = hvac.Client(
            url=addr,
            token=token,
            namespace=namespace,
            verify=verify,
            cert=client_cert,
            # hvac hands the timeout to requests, which takes seconds as a float; types-hvac says int.
            timeout=timeout,  # type: ignore[arg-type]  # seconds as a float: types-hvac says int
        )
        if self._role and not token:
            self._login()

    # -- plumbing ----------------------------------------------------------------------------

    def _login(self) -> None:
        if self._role is None:
            raise ProviderMisconfigured("vault AppRole login without a role_id and secret_id")
        role_id, secret_id, mount = self._role
        try:
            self._client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=mount)
        except _RETRYABLE as exc:
            raise ProviderUnavailable(f"vault at {self.addr} unreachable for AppRole login: "
                                      f"{type(exc).__name__}") from None
        except (hv.InvalidRequest, hv.Forbidden, hv.Unauthorized):
            raise ProviderError("vault AppRole login refused (check role_id / secret_id)") from None

    def _call(self, what: str, fn: Callable[[], T], name: str | None = None) -> T:
        delay = self.backoff
        relogged = False
        attempt = 0
        while True:
            try:
                return fn()
            except _RETRYABLE as exc:
                attempt += 1
                if attempt > self.retries:
                    errors = "; ".join(str(e) for e in (getattr(exc, "errors", None) or []))[:200]
                    raise ProviderUnavailable(
                        f"vault at {self.addr} unavailable for {what} after {attempt} attempts "
                        f"({type(exc).__name__}{': ' + errors if errors else ''}); failing closed"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            except (hv.Forbidden, hv.Unauthorized):
                if self._role and not relogged:
                    relogged = True
                    self._login()
                    continue
                raise ProviderError(f"vault refused {what}: permission denied") from None
            except hv.InvalidPath as exc:
                errors = " ".join(str(e) for e in (getattr(exc, "errors", None) or []))
                if "no handler for route" in errors:  # the mount itself is missing, not the key
                    raise ProviderMisconfigured(
                        f"no transit secrets engine is mounted at '{self.mount}/' on {self.addr}: mount it "
                        f"(bao secrets enable -path={self.mount} transit, or the vault CLI's equivalent) or "
                        "set ZTCP_VAULT_MOUNT to the mount in use") from None
                if name is not None:
                    raise KeyNotFound(name) from None
                raise ProviderError(f"vault: no such path for {what}") from None
            except hv.InvalidRequest as exc:
                msg = " ".join(getattr(exc, "errors", None) or [str(exc)])
                if "authentication failed" in msg or "invalid ciphertext" in msg:
                    raise CiphertextError(f"transit {what} under {name!r}: ciphertext fails authentication") \
                        from None
                if "min_decryption_version" in msg or "ciphertext or signature version is disallowed" in msg:
                    raise KeyVersionUnavailable(name or "?", 0, "below the minimum decryption version") \
                        from None
                raise ProviderError(f"vault refused {what}: {msg[:200]}") from None
            except hv.VaultError as exc:
                raise ProviderError(f"vault error during {what}: {type(exc).__name__}") from None

    @property
    def _transit(self) -> Transit:
        return self._client.secrets.transit

    def _chunks(self, items: Sequence[T], size_of: Callable[[T], int]) -> list[list[T]]:
        out: list[list[T]] = []
        cur: list[T] = []
        cur_bytes = 0
        for it in items:
            n = size_of(it)
            if cur and (len(cur) >= self.batch_items or cur_bytes + n > self.batch_bytes):
                out.append(cur)
                cur, cur_bytes = [], 0
            cur.append(it)
            cur_bytes += n
        if cur:
            out.append(cur)
        return out

    @staticmethod
    def _batch_results(resp: dict[str, Any], what: str, name: str) -> list[_BatchResult]:
        results: list[_BatchResult] = resp["data"]["batch_results"]
        for r in results:
            if r.get("error"):
                err = str(r["error"])
                if "authentication failed" in err or "invalid ciphertext" in err:
                    raise CiphertextError(f"transit {what} under {name!r}: a ciphertext fails authentication")
                if "version is disallowed" in err or "min_decryption_version" in err:
                    raise KeyVersionUnavailable(name, 0, "below the minimum decryption version")
                raise ProviderError(f"transit {what} under {name!r} failed: {err[:200]}")
        return results

    # -- key management -----------------------------------------------------------------------

    def create(self, name: str, type: str) -> KeyInfo:  # noqa: A002
        if type not in KEY_TYPES:
            raise KeyMgmtError(f"unknown key type {type!r}; expected one of {', '.join(KEY_TYPES)}")
        if self.exists(name):
            raise KeyExists(name)
        body: dict[str, Any] = {"type": type}
        if type == "hmac":
            body["exportable"] = True
            body["key_size"] = 32
        # Raw write: hvac's create_key validates key types against a list that lacks "hmac".
        self._call(
            "create key",
            lambda: self._client.adapter.post(f"/v1/{self.mount}/keys/{name}", json=body),
            name,
        )
        return self.info(name)

    def ensure(self, name: str, type: str) -> KeyInfo:  # noqa: A002
        if not self.exists(name):
            try:
                return self.create(name, type)
            except KeyExists:
                pass
        info = self.info(name)
        if info.type != type:
            raise KeyTypeMismatch(name, info.type, type)
        return info

    def exists(self, name: str) -> bool:
        try:
            self._read(name)
        except KeyNotFound:
            return False
        return True

    def _read(self, name: str) -> dict[str, Any]:
        """Transit's description of key ``name`` (its JSON ``data``: type, versions, …)."""
        resp = self._call("read key", lambda: self._transit.read_key(name, mount_point=self.mount), name)
        data: dict[str, Any] = resp["data"]
        return data

    def info(self, name: str) -> KeyInfo:
        return self._info(name, self._read(name))

    @staticmethod
    def _version_time(v: Any) -> datetime:
        if isinstance(v, dict):
            v = v.get("creation_time") or v.get("time")
        if isinstance(v, int | float):
            return datetime.fromtimestamp(v, UTC)
        if isinstance(v, str):
            return datetime.fromisoformat(v.replace("Z", "+00:00"))
        return datetime.now(UTC)

    def _info(self, name: str, d: dict[str, Any]) -> KeyInfo:
        keys = d.get("keys") or {}
        latest = int(d["latest_version"])
        created = self._version_time(keys.get("1", keys.get(1))) if keys else datetime.now(UTC)
        rotated = self._version_time(keys.get(str(latest))) if latest > 1 and str(latest) in keys else None
        return KeyInfo(
            name=name,
            type=d["type"],
            latest_version=latest,
            min_decryption_version=int(d["min_decryption_version"]),
            created_at=created,
            rotated_at=rotated,
            provider="vault",
        )

    def list(self) -> list[KeyInfo]:
        try:
            resp = self._call("list keys", lambda: self._transit.list_keys(mount_point=self.mount), "*")
        except KeyNotFound:  # transit answers 404 when the mount has no keys yet
            return []
        names = (resp or {}).get("data", {}).get("keys", []) if resp else []
        return [self.info(n) for n in sorted(names)]

    def rotate(self, name: str) -> int:
        self._call("rotate key", lambda: self._transit.rotate_key(name, mount_point=self.mount), name)
        return self.info(name).latest_version

    def set_min_decryption_version(self, name: str, n: int) -> None:
        latest = self.info(name).latest_version
        if not isinstance(n, int) or n < 1 or n > latest:
            raise KeyMgmtError(f"min decryption version for {name!r} must be between 1 and {latest}")
        self._call(
            "update key config",
            lambda: self._transit.update_key_configuration(
                name, min_decryption_version=n, mount_point=self.mount
            ),
            name,
        )

    # -- KEK operations --------------------------------------------------------------------

    def generate_datakey(self, name: str, bits: int = 256) -> tuple[bytes, str]:
        resp = self._call(
            "datakey",
            lambda: self._transit.generate_data_key(
                name, key_type="plaintext", bits=bits, mount_point=self.mount
            ),
            name,
        )
        return base64.b64decode(resp["data"]["plaintext"]), resp["data"]["ciphertext"]

    def wrap(self, name: str, plaintext: bytes) -> str:
        return self.wrap_many(name, [plaintext])[0]

    def unwrap(self, name: str, wrapped: str) -> bytes:
        return self.unwrap_many(name, [wrapped])[0]

    def wrap_many(self, name: str, plaintexts: Sequence[bytes]) -> builtins.list[str]:
        out: list[str] = []
        for chunk in self._chunks(plaintexts, lambda p: len(p) * 4 // 3 + 32):
            batch = [{"plaintext": base64.b64encode(p).decode()} for p in chunk]
            resp = self._call(
                "encrypt",
                functools.partial(self._transit.encrypt_data, name, batch_input=batch, mount_point=self.mount),
                name,
            )
            out.extend(r["ciphertext"] for r in self._batch_results(resp, "encrypt", name))
        return out

    def unwrap_many(self, name: str, wrapped: Sequence[str]) -> builtins.list[bytes]:
        for w in wrapped:
            self.wrapped_version(w)
        out: list[bytes] = []
        for chunk in self._chunks(wrapped, lambda w: len(w) + 32):
            batch = [{"ciphertext": w} for w in chunk]
            resp = self._call(
                "decrypt",
                functools.partial(self._transit.decrypt_data, name, batch_input=batch, mount_point=self.mount),
                name,
            )
            out.extend(base64.b64decode(r["plaintext"]) for r in self._batch_results(resp, "decrypt", name))
        return out

    def rewrap_many(self, name: str, wrapped: Sequence[str]) -> builtins.list[str]:
        for w in wrapped:
            self.wrapped_version(w)
        out: list[str] = []
        for chunk in self._chunks(wrapped, lambda w: len(w) + 32):
            batch = [{"ciphertext": w} for w in chunk]
            resp = self._call(
                "rewrap",
                functools.partial(
                    self._transit.rewrap_data, name, ciphertext=None, batch_input=batch, mount_point=self.mount
                ),
                name,
            )
            out.extend(r["ciphertext"] for r in self._batch_results(resp, "rewrap", name))
        return out

    def wrapped_version(self, wrapped: str) -> int:
        m = _WRAPPED_RE.match(wrapped) if isinstance(wrapped, str) else None
        if not m:
            raise CiphertextError("not a transit ciphertext (expected vault:v<N>:…)")
        return int(m.group(1))

    # -- HMAC and signing keys ----------------------------------------------------------------

    def hmac_key(self, name: str, version: int | None = None) -> bytes:
        info = self.info(name)
        if info.type != "hmac":
            raise KeyTypeMismatch(name, info.type, "hmac")
        v = info.latest_version if version is None else version
        if version is not None and v < info.min_decryption_version:
            raise KeyVersionUnavailable(name, v, "below the minimum decryption version")
        resp = self._call(
            "export hmac key",
            lambda: self._transit.export_key(
                name, key_type="hmac-key", version=str(v), mount_point=self.mount
            ),
            name,
        )
        keys = resp["data"]["keys"]
        raw = keys.get(str(v))
        if raw is None:
            raise KeyVersionUnavailable(name, v, "no such version")
        return base64.b64decode(raw)

    def ed25519_public_keys(self, name: str) -> dict[int, Ed25519PublicKey]:
        d = self._read(name)
        if d["type"] != "ed25519":
            raise KeyTypeMismatch(name, d["type"], "ed25519")
        out: dict[int, Ed25519PublicKey] = {}
        for v, meta in (d.get("keys") or {}).items():
            trusted = int(v) >= int(d["min_decryption_version"])
            if trusted and isinstance(meta, dict) and meta.get("public_key"):
                out[int(v)] = Ed25519PublicKey.from_public_bytes(base64.b64decode(meta["public_key"]))
        return dict(sorted(out.items()))

    def sign_ed25519(self, name: str, data: bytes, *, version: int | None = None) -> tuple[int, bytes]:
        """Sign inside Vault (the private key never leaves it) with ``version``, else the latest."""
        resp = self._call(
            "sign",
            lambda: self._transit.sign_data(
                name, hash_input=base64.b64encode(data).decode(), key_version=version, mount_point=self.mount
            ),
            name,
        )
        sig = resp["data"]["signature"]
        m = _WRAPPED_RE.match(sig)
        if not m:
            raise ProviderError("unexpected transit signature format")
        return int(m.group(1)), base64.b64decode(sig[m.end():])
