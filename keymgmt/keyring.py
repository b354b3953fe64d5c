"""The local keyring: every named key and all its versions in one file sealed with AES-256-GCM.

It is the embedded counterpart of a Vault/OpenBao transit mount and keeps the same semantics:
versioned keys, rotation, a minimum decryption version, KEK wrap/unwrap with a version tag
(``ztcp:v3:…`` like transit's ``vault:v3:…``) and data-key generation.

File layout (``keyring.sealed``), JSON::

    {"format": "ztcp-keyring", "v": 1, "kcv": b64, "nonce": b64, "ct": b64}

``ct`` is AES-256-GCM(master key, nonce, plaintext JSON, aad = the header fields). ``kcv`` is a
key-check value, HMAC-SHA256(master key, label)[:8], which lets us tell "wrong master key"
(:class:`MasterKeyMismatch`) from "file tampered" (:class:`KeyringCorrupt`) before touching anything.

Concurrency: ``ztcp serve`` and CLI commands may open the same keyring. Every mutation takes an
exclusive ``flock`` on a sidecar lock file, re-reads the file, changes it, writes a new file (0600
from creation) and renames it over the old one, so readers always see a whole keyring. Readers
re-read when the file's identity (inode, size, mtime) changed.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import stat
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Required, TypedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict

from keymgmt.errors import (
    CiphertextError,
    KeyExists,
    KeyMgmtError,
    KeyNotFound,
    KeyringCorrupt,
    KeyTypeMismatch,
    KeyVersionUnavailable,
    MasterKeyError,
    MasterKeyMismatch,
)

KeyType = Literal["aes256-gcm96", "hmac", "ed25519"]
KEY_TYPES: tuple[str, ...] = ("aes256-gcm96", "hmac", "ed25519")
KEYRING_FILENAME = "keyring.sealed"
MASTER_KEY_FILENAME = "master.key"

_FORMAT = "ztcp-keyring"
_FORMAT_VERSION = 1
_KCV_LABEL = b"ztcp keyring key-check value v1"
_WRAP_PREFIX = "ztcp"
_WRAP_RE = re.compile(r"^ztcp:v([1-9][0-9]{0,9}):([A-Za-z0-9+/=]+)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class KeyInfo(BaseModel):
    """What ``keys list`` shows about a key; no material."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: str
    latest_version: int
    min_decryption_version: int
    created_at: datetime
    rotated_at: datetime | None = None
    provider: str = "local"


class _VersionEntry(TypedDict):
    material: str  # base64 of the key bytes (an Ed25519 private key's raw 32 bytes for ed25519)
    at: str  # ISO 8601, when this version was made


class _KeyEntry(TypedDict):
    type: str  # one of KEY_TYPES
    created_at: str
    rotated_at: str | None
    latest_version: int
    min_decryption_version: int
    versions: dict[str, _VersionEntry]  # by version number, as a string (JSON object keys)


class _KeyringState(TypedDict, total=False):
    """The sealed plaintext: every key by name (``keys``, always there), and for a keyring shared
    through PostgreSQL the write ``generation`` (inside the seal, so an older document put back is seen)."""

    keys: Required[dict[str, _KeyEntry]]
    generation: int


# --------------------------------------------------------------------------------------------
# master key


def _b64decode_strict(value: str) -> bytes:
    return base64.b64decode(value.strip(), validate=True)


def load_master_key(home: Path, env_value: str | None) -> bytes:
    """The 32-byte master key: from ``env_value`` (ZTCP_MASTER_KEY, base64) or ``home/master.key``.

    The file is created (0600 from creation, never chmod'ed) on first use in embedded mode, and a
    key file readable or writable by group/others is refused rather than trusted.
    """
    if env_value is not None and env_value.strip():
        try:
            key = _b64decode_strict(env_value)
        except (binascii.Error, ValueError):
            raise MasterKeyError("ZTCP_MASTER_KEY is not valid base64") from None
        if len(key) != 32:
            raise MasterKeyError(f"ZTCP_MASTER_KEY must decode to 32 bytes, got {len(key)}")
        return key
    path = Path(home) / MASTER_KEY_FILENAME
    if not path.exists():
        _create_master_key_file(path)
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise MasterKeyError(f"{path} is not a regular file")
    if st.st_uid != os.geteuid():
        raise MasterKeyError(f"{path} is owned by another user (uid {st.st_uid}); refusing to use it")
    if st.st_mode & 0o077:
        raise MasterKeyError(
            f"{path} is accessible by group/others (mode {st.st_mode & 0o777:o}); "
            "refusing to use it — recreate it with mode 0600"
        )
    try:
        key = _b64decode_strict(path.read_text("ascii"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise MasterKeyError(f"{path} does not hold a base64 master key") from None
    if len(key) != 32:
        raise MasterKeyError(f"{path} must hold 32 bytes (base64), got {len(key)}")
    return key


def _create_master_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(os.urandom(32)) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() is atomic and fails if another process created the key first: we then use theirs.
        os.link(tmp, path)
        _fsync_dir(path.parent)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _kcv(master_key: bytes) -> str:
    return base64.b64encode(hmac.new(master_key, _KCV_LABEL, hashlib.sha256).digest()[:8]).decode()


# --------------------------------------------------------------------------------------------
# keyring


class LocalKeyring:
    """Named, versioned keys sealed in one file. Use :meth:`open`."""

    provider_name = "local"

    def __init__(self, path: Path, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise MasterKeyError("the master key must be 32 bytes")
        self.path = Path(path)
        self._master = AESGCM(master_key)
        self._kcv = _kcv(master_key)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._mutex = threading.RLock()
        self._state: _KeyringState = {"keys": {}}
        self._ident: tuple[int, int, int] | None = None
        self._aead_cache: dict[tuple[str, int], AESGCM] = {}

    # Where the keyring is, as messages name it, and what to check when the master key is wrong
    # (the shared keyring of a cluster overrides both).
    master_key_hint = "ZTCP_MASTER_KEY / master.key"

    @property
    def location(self) -> str:
        return str(self.path)

    @classmethod
    def open(cls, path: Path, master_key: bytes) -> LocalKeyring:
        """Open (or create, empty) the keyring at ``path``. A wrong master key raises at once."""
        ring = cls(path, master_key)
        ring.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with ring._locked():
            if ring.path.exists():
                ring._load()
            else:
                ring._write(ring._state)
        return ring

    # -- file handling -------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _file_ident(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> None:
        ident = self._file_ident()
        self._state = self._unseal(self.path.read_bytes())
        self._ident = ident
        self._aead_cache.clear()

    def _unseal(self, raw: bytes) -> _KeyringState:
        """The keyring's plaintext from its sealed document; the wrong master key or a tampered
        document raises before anything is used."""
        try:
            doc = json.loads(raw)
            if doc.get("format") != _FORMAT or doc.get("v") != _FORMAT_VERSION:
                raise ValueError("not a ztcp keyring")
            kcv, nonce, ct = doc["kcv"], _b64decode_strict(doc["nonce"]), _b64decode_strict(doc["ct"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise KeyringCorrupt(f"keyring {self.location} is not a readable ztcp keyring") from None
        if not hmac.compare_digest(str(kcv), self._kcv):
            raise MasterKeyMismatch(self.location, self.master_key_hint)
        try:
            plain = self._master.decrypt(nonce, ct, self._aad(kcv))
        except InvalidTag:
            raise KeyringCorrupt(
                f"keyring {self.location} fails authentication under the right master key (tampered?)"
            ) from None
        state: _KeyringState = json.loads(plain)
        return state

    @staticmethod
    def _aad(kcv: str) -> bytes:
        return f"{_FORMAT}|{_FORMAT_VERSION}|{kcv}".encode()

    def _seal(self, state: _KeyringState) -> bytes:
        """The sealed document of ``state`` (a fresh nonce each time)."""
        nonce = os.urandom(12)
        ct = self._master.encrypt(nonce, json.dumps(state, sort_keys=True).encode(), self._aad(self._kcv))
        doc = {
            "format": _FORMAT,
            "v": _FORMAT_VERSION,
            "kcv": self._kcv,
            "nonce": base64.b64encode(nonce).decode(),
            "ct": base64.b64encode(ct).decode(),
        }
        return json.dumps(doc).encode()

    def _write(self, state: _KeyringState) -> None:
        sealed = self._seal(state)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a leftover of a crashed writer (we hold the lock, so it is not live)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, sealed)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._state = state
        self._ident = self._file_ident()
        self._aead_cache.clear()

    def _fresh(self) -> _KeyringState:
        """Current state for reading, re-loaded if another process replaced the file."""
        with self._mutex:
            if self._file_ident() != self._ident:
                with self._locked():
                    self._load()
            return self._state

    @contextlib.contextmanager
    def _mutate(self) -> Iterator[_KeyringState]:
        with self._locked():
            self._load()
            state: _KeyringState = json.loads(json.dumps(self._state))
            yield state
            self._write(state)

    # -- key management ------------------------------------------------------------------

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise KeyMgmtError(f"invalid key name {name!r} (letters, digits, '_', '.', '-'; ≤128)")

    @staticmethod
    def _material(key_type: str) -> bytes:
        if key_type == "ed25519":
            from cryptography.hazmat.primitives import serialization

            return Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
        return os.urandom(32)

    def create(self, name: str, type: str) -> KeyInfo:  # noqa: A002 - the CLI's word
        self._check_name(name)
        if type not in KEY_TYPES:
            raise KeyMgmtError(f"unknown key type {type!r}; expected one of {', '.join(KEY_TYPES)}")
        with self._mutate() as state:
            if name in state["keys"]:
                raise KeyExists(name)
            now = _now()
            state["keys"][name] = {
                "type": type,
                "created_at": now,
                "rotated_at": None,
                "latest_version": 1,
                "min_decryption_version": 1,
                "versions": {"1": {"material": base64.b64encode(self._material(type)).decode(), "at": now}},
            }
        return self.info(name)

    def ensure(self, name: str, type: str) -> KeyInfo:  # noqa: A002
        """Create ``name`` if missing; idempotent. An existing key of another type is an error."""
        state = self._fresh()
        entry = state["keys"].get(name)
        if entry is None:
            try:
                return self.create(name, type)
            except KeyExists:
                entry = self._fresh()["keys"][name]  # another process won the race
        if entry["type"] != type:
            raise KeyTypeMismatch(name, entry["type"], type)
        return self.info(name)

    def rotate(self, name: str) -> int:
        with self._mutate() as state:
            entry = self._entry_in(state, name)
            version = entry["latest_version"] + 1
            now = _now()
            entry["versions"][str(version)] = {
                "material": base64.b64encode(self._material(entry["type"])).decode(),
                "at": now,
            }
            entry["latest_version"] = version
            entry["rotated_at"] = now
        return version

    def set_min_decryption_version(self, name: str, n: int) -> None:
        with self._mutate() as state:
            entry = self._entry_in(state, name)
            if not isinstance(n, int) or n < 1 or n > entry["latest_version"]:
                raise KeyMgmtError(
                    f"min decryption version for {name!r} must be between 1 and {entry['latest_version']}"
                )
            entry["min_decryption_version"] = n

    def exists(self, name: str) -> bool:
        return name in self._fresh()["keys"]

    def info(self, name: str) -> KeyInfo:
        return self._info(name, self._entry_in(self._fresh(), name))

    def list(self) -> list[KeyInfo]:
        state = self._fresh()
        return [self._info(n, e) for n, e in sorted(state["keys"].items())]

    @staticmethod
    def _info(name: str, e: _KeyEntry) -> KeyInfo:
        return KeyInfo(
            name=name,
            type=e["type"],
            latest_version=e["latest_version"],
            min_decryption_version=e["min_decryption_version"],
            created_at=datetime.fromisoformat(e["created_at"]),
            rotated_at=datetime.fromisoformat(e["rotated_at"]) if e["rotated_at"] else None,
        )

    def _entry_in(self, state: _KeyringState, name: str) -> _KeyEntry:
        entry = state["keys"].get(name)
        if entry is None:
            raise KeyNotFound(name)
        return entry

    def _version_material(
        self, name: str, key_type: str, version: int | None, *, for_decrypt: bool
    ) -> tuple[int, bytes]:
        entry = self._entry_in(self._fresh(), name)
        if entry["type"] != key_type:
            raise KeyTypeMismatch(name, entry["type"], key_type)
        v = entry["latest_version"] if version is None else version
        got = entry["versions"].get(str(v))
        if got is None:
            raise KeyVersionUnavailable(name, v, "no such version")
        if for_decrypt and v < entry["min_decryption_version"]:
            raise KeyVersionUnavailable(
                name, v, f"below the minimum decryption version {entry['min_decryption_version']}"
            )
        return v, base64.b64decode(got["material"])

    # -- signing and HMAC keys -------------------------------------------------------------

    def ed25519_private(self, name: str, version: int | None = None) -> Ed25519PrivateKey:
        _, raw = self._version_material(name, "ed25519", version, for_decrypt=version is not None)
        return Ed25519PrivateKey.from_private_bytes(raw)

    def ed25519_public_keys(self, name: str) -> dict[int, Ed25519PublicKey]:
        """Public keys of every version still trusted (≥ the minimum decryption version)."""
        entry = self._entry_in(self._fresh(), name)
        if entry["type"] != "ed25519":
            raise KeyTypeMismatch(name, entry["type"], "ed25519")
        out: dict[int, Ed25519PublicKey] = {}
        for v_str, ver in entry["versions"].items():
            v = int(v_str)
            if v >= entry["min_decryption_version"]:
                out[v] = Ed25519PrivateKey.from_private_bytes(
                    base64.b64decode(ver["material"])
                ).public_key()
        return dict(sorted(out.items()))

    def hmac_key(self, name: str, version: int | None = None) -> bytes:
        return self._version_material(name, "hmac", version, for_decrypt=version is not None)[1]

    def hmac_key_versioned(self, name: str, version: int | None = None) -> tuple[int, bytes]:
        return self._version_material(name, "hmac", version, for_decrypt=version is not None)

    # -- KEK operations (what the envelope layer needs) --------------------------------------

    def _aead(self, name: str, version: int | None, *, for_decrypt: bool) -> tuple[int, AESGCM]:
        v, raw = self._version_material(name, "aes256-gcm96", version, for_decrypt=for_decrypt)
        return v, AESGCM(raw)

    @staticmethod
    def _wrap_aad(name: str, version: int, context: bytes) -> bytes:
        # Bind a wrapped DEK to the key name and version (and optional caller context).
        return b"ztcp-kek|" + name.encode() + b"|v" + str(version).encode() + b"|" + context

    def wrap(self, name: str, plaintext: bytes, context: bytes = b"") -> str:
        """Encrypt ``plaintext`` (a DEK) under the latest version: ``ztcp:v<N>:<b64(nonce|ct)>``."""
        v, aead = self._aead(name, None, for_decrypt=False)
        nonce = os.urandom(12)
        ct = aead.encrypt(nonce, plaintext, self._wrap_aad(name, v, context))
        return f"{_WRAP_PREFIX}:v{v}:{base64.b64encode(nonce + ct).decode()}"

    def unwrap(self, name: str, wrapped: str, context: bytes = b"") -> bytes:
        version, blob = parse_wrapped(wrapped)
        _, aead = self._aead(name, version, for_decrypt=True)
        try:
            return aead.decrypt(blob[:12], blob[12:], self._wrap_aad(name, version, context))
        except InvalidTag:
            raise CiphertextError(f"wrapped key under {name!r} v{version} fails authentication") from None

    def rewrap(self, name: str, wrapped: str, context: bytes = b"") -> str:
        """Re-encrypt a wrapped value under the latest version (plaintext never leaves this object)."""
        return self.wrap(name, self.unwrap(name, wrapped, context), context)

    def generate_datakey(self, name: str, bits: int = 256, context: bytes = b"") -> tuple[bytes, str]:
        """A fresh random data key and its wrapped form under the latest version of KEK ``name``."""
        if bits not in (128, 256):
            raise KeyMgmtError("data keys are 128 or 256 bits")
        dek = os.urandom(bits // 8)
        return dek, self.wrap(name, dek, context)

    def wrap_many(self, name: str, plaintexts: Sequence[bytes]) -> builtins.list[str]:
        return [self.wrap(name, p) for p in plaintexts]

    def unwrap_many(self, name: str, wrapped: Sequence[str]) -> builtins.list[bytes]:
        return [self.unwrap(name, w) for w in wrapped]

    def rewrap_many(self, name: str, wrapped: Sequence[str]) -> builtins.list[str]:
        return [self.rewrap(name, w) for w in wrapped]

    def wrapped_version(self, wrapped: str) -> int:
        return parse_wrapped(wrapped)[0]


def parse_wrapped(wrapped: str) -> tuple[int, bytes]:
    """Split ``ztcp:v<N>:<b64>`` into (version, nonce|ct); anything else is a :class:`CiphertextError`."""
    m = _WRAP_RE.match(wrapped) if isinstance(wrapped, str) else None
    if not m:
        raise CiphertextError("not a ztcp wrapped key (expected ztcp:v<N>:<base64>)")
    try:
        blob = base64.b64decode(m.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise CiphertextError("wrapped key is not valid base64") from None
    if len(blob) < 12 + 16:
        raise CiphertextError("wrapped key is too short")
    return int(m.group(1)), blob


def default_keyring_path(home: Path) -> Path:
    return Path(home) / KEYRING_FILENAME


def open_local_keyring(home: Path, master_key_value: str | None) -> LocalKeyring:
    """The embedded keyring of ``home``: master key from the ZTCP_MASTER_KEY value or home/master.key."""
    return LocalKeyring.open(default_keyring_path(home), load_master_key(home, master_key_value))
