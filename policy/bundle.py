"""Signed OPA bundles: build them from a pack, verify them before a pack is ever activated.

Format (OPA "Bundle File Format" and "Signing"): a gzipped tar holding ``/.manifest`` (``revision``,
``roots``, ``rego_version``, ``metadata``), the pack's modules and ``data.json`` / ``data.yaml``
documents at their data paths, the pack's other files (JSON Schemas), and ``/.signatures.json``::

    {"signatures": ["<compact JWS>"]}

The JWS payload is ``{"files": [{"name", "hash", "algorithm": "SHA-256"}], "keyid", "scope", "iat",
"iss"}``: one SHA-256 per file. As in OPA, structured files (``data.json``, ``data.yaml``,
``.manifest``) are hashed over their canonical JSON (keys sorted, no insignificant whitespace,
numbers verbatim, no HTML escaping) and every other file over its bytes. The JWS is Ed25519,
header ``alg`` ``EdDSA`` (the name OPA's JOSE library knows; joserfc calls it deprecated in favour of
RFC 9864's ``Ed25519``, which we also accept), ``kid`` the RFC 7638 thumbprint of the key.

Beyond OPA's checks, :func:`verify_bundle` requires the manifest, exactly one signature, a known
key, the expected scope, that the set of files equals the signed set, and that the pack digest
recomputed over the raw bytes equals the digest in the signed manifest metadata (so even a
whitespace change in a data file is refused).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import warnings
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from policy.errors import BundleRejected, PackError
from policy.pack import PolicyPack, digest_files, pack_from_files

MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
SIGNING_ALG = "EdDSA"
ACCEPTED_ALGS = ("EdDSA", "Ed25519")
DEFAULT_SCOPE = "write"
ACTIVE_SCOPE = DEFAULT_SCOPE  # enforced bundles (OPA's conventional scope)
SHADOW_SCOPE = "shadow"  # report-only bundles: never verify as enforceable
HASH_ALG = "SHA-256"
MAX_BUNDLE_BYTES = 32 * 1024 * 1024  # uncompressed; a policy pack is kilobytes
MAX_MEMBERS = 5000
_STRUCTURED = ("data.json", "data.yaml", "data.yml", MANIFEST, SIGNATURES)

# OPA's JOSE library knows Ed25519 only as "EdDSA"; joserfc warns about that name on every use.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", module="joserfc")


def key_id(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint: the kid is derived from the key, so rotations never collide."""
    return OKPKey.import_key(public_key).thumbprint()


class BundleSigner:
    """Signs bundle file lists with one Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey, *, scope: str = DEFAULT_SCOPE, issuer: str = "ztcp") -> None:
        self.public_key = private_key.public_key()
        self.kid = key_id(self.public_key)
        self.scope = scope
        self.issuer = issuer
        self._private_key = private_key
        self._key = OKPKey.import_key(private_key, {"kid": self.kid})

    def with_scope(self, scope: str) -> BundleSigner:
        if scope == self.scope:
            return self
        return BundleSigner(self._private_key, scope=scope, issuer=self.issuer)

    def sign(self, files: list[dict[str, str]], *, iat: int) -> str:
        payload = {"files": files, "keyid": self.kid, "scope": self.scope, "iat": iat, "iss": self.issuer}
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        header = {"alg": SIGNING_ALG, "kid": self.kid, "typ": "JWT"}
        return jws.serialize_compact(header, body, self._key, algorithms=[SIGNING_ALG])


def as_signer(signer: BundleSigner | Ed25519PrivateKey) -> BundleSigner:
    return signer if isinstance(signer, BundleSigner) else BundleSigner(signer)


# --- canonical JSON, as OPA hashes structured files -------------------------------------------


class _Number(str):
    """A JSON number kept as its literal text (Go's json.Number), so hashing never reformats it."""


def _go_string(value: str) -> str:
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical_json(value: Any) -> bytes:
    """OPA's structured-file hashing form (bundle/hash.go): sorted keys, compact, literal numbers."""
    parts: list[str] = []

    def emit(v: Any) -> None:
        if isinstance(v, _Number):
            parts.append(str(v))
        elif isinstance(v, bool):
            parts.append("true" if v else "false")
        elif v is None:
            parts.append("null")
        elif isinstance(v, str):
            parts.append(_go_string(v))
        elif isinstance(v, int):
            parts.append(str(v))
        elif isinstance(v, float):
            parts.append(json.dumps(v))
        elif isinstance(v, dict):
            parts.append("{")
            for i, key in enumerate(sorted(v, key=lambda k: str(k).encode("utf-8"))):
                if i:
                    parts.append(",")
                parts.append(_go_string(str(key)))
                parts.append(":")
                emit(v[key])
            parts.append("}")
        elif isinstance(v, list | tuple):
            parts.append("[")
            for i, item in enumerate(v):
                if i:
                    parts.append(",")
                emit(item)
            parts.append("]")
        else:
            raise TypeError(f"not a JSON value: {type(v).__name__}")

    emit(value)
    return "".join(parts).encode("utf-8")


def _parse_structured(name: str, raw: bytes) -> Any:
    if name.endswith((".yaml", ".yml")):
        return yaml.safe_load(raw)
    return json.loads(raw, parse_int=_Number, parse_float=_Number)


def file_hash(name: str, raw: bytes) -> str:
    """Hex SHA-256 of a bundle file the way OPA computes it for signatures."""
    if name.rsplit("/", 1)[-1] in _STRUCTURED:
        return hashlib.sha256(canonical_json(_parse_structured(name, raw))).hexdigest()
    return hashlib.sha256(raw).hexdigest()


# --- building ---------------------------------------------------------------------------------


def bundle_roots(pack: PolicyPack) -> list[str]:
    """Top-level names the bundle owns: data keys and first segments of packages."""
    roots = set(pack.data)
    for source in pack.modules.values():
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith("package "):
                roots.add(stripped.split()[1].split(".")[0].split("[")[0])
                break
    return sorted(roots)


def _tar_bytes(members: list[tuple[str, bytes]], mtime: int) -> bytes:
    buf = io.BytesIO()
    # gzip header mtime fixed and entries sorted: the same revision always gives the same bytes.
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=9) as tar:
        for name, raw in members:
            info = tarfile.TarInfo("/" + name)
            info.size = len(raw)
            info.mtime = mtime
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(raw))
    return _fixed_gzip_mtime(buf.getvalue())


def _fixed_gzip_mtime(data: bytes) -> bytes:
    # tarfile's gzip writer stamps the current time into header bytes 4..8; zero it.
    return data[:4] + b"\0\0\0\0" + data[8:]


def build_bundle(
    pack: PolicyPack,
    revision: str,
    signer: BundleSigner | Ed25519PrivateKey,
    *,
    issued_at: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> bytes:
    """A signed OPA bundle (tar.gz bytes) of ``pack`` named ``revision``."""
    signer = as_signer(signer)
    iat = int(issued_at if issued_at is not None else time.time())
    manifest = {
        "revision": revision,
        "roots": bundle_roots(pack),
        "rego_version": 1,
        "metadata": {"ztcp": {"revision": revision, "digest": pack.digest, **dict(metadata or {})}},
    }
    manifest_raw = json.dumps(manifest, sort_keys=True, indent=2).encode() + b"\n"
    files = {MANIFEST: manifest_raw, **{name: pack.files[name] for name in sorted(pack.files)}}
    infos = [{"name": n, "hash": file_hash(n, raw), "algorithm": HASH_ALG} for n, raw in sorted(files.items())]
    signatures = json.dumps({"signatures": [signer.sign(infos, iat=iat)]}, indent=1).encode() + b"\n"
    return _tar_bytes([*sorted(files.items()), (SIGNATURES, signatures)], mtime=iat)


# --- verifying --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedBundle:
    pack: PolicyPack
    revision: str
    digest: str
    manifest: dict[str, Any]
    kid: str
    issued_at: int | None


def _read_members(data: bytes, max_bytes: int) -> dict[str, bytes]:
    if len(data) > max_bytes:
        raise BundleRejected("too_large", f"bundle is {len(data)} bytes, limit {max_bytes}")
    members: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for count, info in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise BundleRejected("too_large", f"more than {MAX_MEMBERS} files")
                if info.isdir():
                    continue
                name = info.name.lstrip("/")
                if not info.isfile():
                    raise BundleRejected("unsafe_path", f"{name}: not a regular file", file=name)
                parts = name.split("/")
                if not name or any(p in ("", ".", "..") for p in parts) or "\\" in name:
                    raise BundleRejected("unsafe_path", f"{info.name!r}: unsafe member name", file=name)
                if name in members:
                    raise BundleRejected("malformed", f"{name}: appears twice in the archive", file=name)
                total += info.size
                if total > max_bytes:
                    raise BundleRejected("too_large", f"uncompressed content exceeds {max_bytes} bytes")
                handle = tar.extractfile(info)
                members[name] = handle.read() if handle else b""
    except BundleRejected:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise BundleRejected("not_an_archive", f"not a readable tar.gz ({type(exc).__name__})") from None
    return members


def _public_keys(keys: Mapping[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey]) -> dict[str, OKPKey]:
    items = list(keys.items()) if isinstance(keys, Mapping) else [(key_id(k), k) for k in keys]
    return {kid: OKPKey.import_key(pub) for kid, pub in items}


def _signed_files(
    raw_signatures: bytes, keys: dict[str, OKPKey], scope: str
) -> tuple[dict[str, dict[str, Any]], str, Any]:
    """The signed file entries by name (``{"name", "hash", "algorithm"}``), the signing key id and the
    JWT's ``iat`` as the signer wrote it."""
    try:
        doc = json.loads(raw_signatures)
        tokens = doc["signatures"]
        if not isinstance(tokens, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise BundleRejected("malformed", f'{SIGNATURES}: not {{"signatures": [JWT]}}', file=SIGNATURES) from None
    if len(tokens) != 1 or not isinstance(tokens[0], str):
        raise BundleRejected("malformed", f"{SIGNATURES}: expected exactly one JWT, found {len(tokens)}")
    token = tokens[0]
    try:
        unverified = jws.extract_compact(token.encode())
        header = unverified.protected
        claims = json.loads(unverified.payload)
    except (JoseError, ValueError, TypeError):
        raise BundleRejected("malformed", f"{SIGNATURES}: the JWT cannot be decoded", file=SIGNATURES) from None
    if not isinstance(claims, dict):
        raise BundleRejected("malformed", f"{SIGNATURES}: JWT payload is not an object", file=SIGNATURES)
    alg = header.get("alg")
    if alg not in ACCEPTED_ALGS:
        raise BundleRejected("bad_signature", f"signature algorithm {alg!r} is not accepted (Ed25519 only)")
    kid = header.get("kid") or claims.get("keyid")
    if not isinstance(kid, str) or kid not in keys:
        raise BundleRejected("unknown_key", f"signed by key {kid!r}, which is not a trusted bundle key")
    try:
        jws.deserialize_compact(token.encode(), keys[kid], algorithms=[alg])
    except JoseError:
        raise BundleRejected("bad_signature", f"signature does not verify with key {kid}") from None
    if claims.get("scope", "") != scope:
        raise BundleRejected("bad_signature", f"signature scope {claims.get('scope')!r} is not {scope!r}")
    files: dict[str, dict[str, Any]] = {}
    entries = claims.get("files")
    if not isinstance(entries, list):
        raise BundleRejected("malformed", "signed payload has no file list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BundleRejected("malformed", "signed file entry without a name")
        files[entry["name"].lstrip("/")] = entry
    return files, kid, claims.get("iat")


def verify_bundle_full(
    data: bytes,
    public_keys: Mapping[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey],
    *,
    scope: str = DEFAULT_SCOPE,
    max_bytes: int = MAX_BUNDLE_BYTES,
) -> VerifiedBundle:
    """Verify everything and return the pack with the manifest facts; raise BundleRejected."""
    keys = _public_keys(public_keys)
    if not keys:
        raise BundleRejected("unknown_key", "no trusted bundle keys configured")
    members = _read_members(data, max_bytes)
    if SIGNATURES not in members:
        raise BundleRejected("unsigned", f"{SIGNATURES} is missing", file=SIGNATURES)
    signed, kid, iat = _signed_files(members.pop(SIGNATURES), keys, scope)
    for name in sorted(members):
        if name not in signed:
            raise BundleRejected("unsigned_file", f"{name} is not covered by the signature", file=name)
    for name in sorted(signed):
        if name not in members:
            raise BundleRejected("missing_file", f"{name} is signed but missing from the bundle", file=name)
    for name in sorted(members):
        entry = signed[name]
        if str(entry.get("algorithm", "")).upper() != HASH_ALG:
            raise BundleRejected("malformed", f"{name}: hash algorithm {entry.get('algorithm')!r}", file=name)
        try:
            actual = file_hash(name, members[name])
        except (ValueError, yaml.YAMLError, UnicodeDecodeError):
            raise BundleRejected("digest_mismatch", f"{name}: content is not valid JSON/YAML", file=name) from None
        expected = str(entry.get("hash", "")).lower()
        if not _equal(actual, expected):
            raise BundleRejected("digest_mismatch", f"{name}: SHA-256 does not match the signature", file=name)
    if MANIFEST not in members:
        raise BundleRejected("malformed", f"{MANIFEST} is missing", file=MANIFEST)
    try:
        manifest = json.loads(members.pop(MANIFEST))
        meta = manifest["metadata"]["ztcp"]
        revision, digest = str(manifest["revision"]), str(meta["digest"])
    except (ValueError, KeyError, TypeError):
        raise BundleRejected("malformed", f"{MANIFEST}: no revision / metadata.ztcp.digest", file=MANIFEST) from None
    if meta.get("revision") not in (None, revision):
        raise BundleRejected("malformed", f"{MANIFEST}: revision and metadata disagree", file=MANIFEST)
    recomputed = digest_files(members)
    if not _equal(recomputed, digest):
        raise BundleRejected("pack_digest_mismatch", f"pack digest {recomputed} is not the signed {digest}")
    try:
        pack = pack_from_files(members, revision=revision)
    except PackError as exc:
        raise BundleRejected("malformed", f"signed content is not a policy pack: {exc}") from None
    return VerifiedBundle(pack=pack, revision=revision, digest=digest, manifest=manifest, kid=kid, issued_at=iat)


def verify_bundle(
    data: bytes,
    public_keys: Mapping[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey],
    *,
    scope: str = DEFAULT_SCOPE,
) -> PolicyPack:
    """The verified pack of a signed bundle (``pack.revision`` set), or BundleRejected."""
    return verify_bundle_full(data, public_keys, scope=scope).pack


def _equal(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())
