"""Signed OPA bundles: round trip, OPA's format, and every tampering refused with a precise reason."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import OKPKey

from policy import (
    BundleRejected,
    BundleSigner,
    build_bundle,
    key_id,
    load_pack,
    pack_from_files,
    verify_bundle,
)
from policy.bundle import SHADOW_SCOPE, canonical_json, file_hash, verify_bundle_full


def _members(bundle: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def _claims(members: dict[str, bytes]) -> tuple[dict, dict]:
    token = json.loads(members["/.signatures.json"])["signatures"][0]
    header, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(header))), json.loads(base64.urlsafe_b64decode(pad(payload)))


@pytest.fixture
def pack(base_files):
    return pack_from_files(base_files)


@pytest.fixture
def bundle(pack, signing_key):
    return build_bundle(pack, "r7", signing_key, issued_at=1_800_000_000)


def test_round_trip(pack, bundle, signing_key):
    verified = verify_bundle_full(bundle, [signing_key.public_key()])
    assert verified.revision == "r7"
    assert verified.pack.revision == "r7"
    assert verified.pack.digest == pack.digest
    assert verified.pack.files == pack.files
    assert verified.pack.data == pack.data
    assert verified.kid == key_id(signing_key.public_key())


def test_deterministic_bytes(pack, signing_key):
    a = build_bundle(pack, "r7", signing_key, issued_at=1_800_000_000)
    b = build_bundle(pack, "r7", signing_key, issued_at=1_800_000_000)
    assert a == b


def test_opa_layout_manifest_and_signature_format(bundle, pack, signing_key):
    members = _members(bundle)
    assert set(members) == {"/.manifest", "/.signatures.json", *("/" + n for n in pack.files)}
    manifest = json.loads(members["/.manifest"])
    assert manifest["revision"] == "r7"
    assert manifest["roots"] == ["ztcp"]
    assert manifest["metadata"]["ztcp"]["digest"] == pack.digest
    header, claims = _claims(members)
    assert header["alg"] == "EdDSA" and header["kid"] == key_id(signing_key.public_key())
    assert claims["keyid"] == header["kid"] and claims["scope"] == "write" and claims["iat"] == 1_800_000_000
    names = sorted(f["name"] for f in claims["files"])
    assert names == sorted(n.lstrip("/") for n in members if n != "/.signatures.json")
    for entry in claims["files"]:
        assert entry["algorithm"] == "SHA-256"
        raw = members["/" + entry["name"]]
        if entry["name"].endswith(".rego") or entry["name"].endswith(".schema.json"):
            assert entry["hash"] == hashlib.sha256(raw).hexdigest()  # unstructured: raw bytes
    data_entry = next(f for f in claims["files"] if f["name"] == "ztcp/config/data.json")
    doc = json.loads(members["/ztcp/config/data.json"])
    # Structured: OPA hashes compact JSON with sorted keys.
    compact = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert data_entry["hash"] == hashlib.sha256(compact).hexdigest()
    # The JWS verifies with the public key through a second, independent path (joserfc directly).
    token = json.loads(members["/.signatures.json"])["signatures"][0]
    jws.deserialize_compact(token, OKPKey.import_key(signing_key.public_key()), algorithms=["EdDSA"])


def test_default_pack_bundle_round_trip(signing_key):
    pack = load_pack()
    verified = verify_bundle(build_bundle(pack, "r1", signing_key), [signing_key.public_key()])
    assert verified.digest == pack.digest
    assert set(json.loads(_members(build_bundle(pack, "r1", signing_key))["/.manifest"])["roots"]) >= {"ztcp"}


def _reject(bundle: bytes, key: Ed25519PrivateKey, reason: str, file: str | None = None) -> BundleRejected:
    with pytest.raises(BundleRejected) as err:
        verify_bundle(bundle, [key.public_key()])
    assert err.value.reason == reason, str(err.value)
    if file is not None:
        assert err.value.file == file
    assert err.value.exit_code == 3
    return err.value


def test_changed_byte_in_module_refused(bundle, signing_key):
    members = _members(bundle)
    raw = bytearray(members["/ztcp/authz.rego"])
    raw[raw.index(b'"permit"') + 6] = ord("x")  # one byte of the module
    members["/ztcp/authz.rego"] = bytes(raw)
    _reject(_tar(members), signing_key, "digest_mismatch", "ztcp/authz.rego")


def test_changed_data_refused(bundle, signing_key):
    members = _members(bundle)
    doc = json.loads(members["/ztcp/config/data.json"])
    doc["thresholds"]["deny"] = 99
    members["/ztcp/config/data.json"] = json.dumps(doc).encode()
    _reject(_tar(members), signing_key, "digest_mismatch", "ztcp/config/data.json")


def test_reformatted_data_refused_by_pack_digest(bundle, signing_key):
    """OPA's canonical hash ignores whitespace; our pack digest over raw bytes does not."""
    members = _members(bundle)
    doc = json.loads(members["/ztcp/config/data.json"])
    members["/ztcp/config/data.json"] = json.dumps(doc, separators=(",", ":")).encode()
    _reject(_tar(members), signing_key, "pack_digest_mismatch")


def test_removed_signature_refused(bundle, signing_key):
    members = _members(bundle)
    del members["/.signatures.json"]
    _reject(_tar(members), signing_key, "unsigned", ".signatures.json")


def test_signature_by_another_key_refused(pack, signing_key):
    other = Ed25519PrivateKey.generate()
    _reject(build_bundle(pack, "r7", other), signing_key, "unknown_key")


def test_other_key_claiming_trusted_kid_refused(pack, signing_key):
    """An attacker copies our kid into a bundle signed with their key: the signature must fail."""
    other = BundleSigner(Ed25519PrivateKey.generate())
    other.kid = key_id(signing_key.public_key())
    other._key = OKPKey.import_key(other._private_key, {"kid": other.kid})
    _reject(build_bundle(pack, "r7", other), signing_key, "bad_signature")


def test_resigned_file_list_with_tampered_module_refused(bundle, signing_key):
    """Edit a module and its hash in the payload, keep the old signature bytes: signature fails."""
    members = _members(bundle)
    token = json.loads(members["/.signatures.json"])["signatures"][0]
    header, payload, signature = token.split(".")
    claims = _claims(members)[1]
    members["/ztcp/authz.rego"] += b"\n# evil\n"
    for f in claims["files"]:
        if f["name"] == "ztcp/authz.rego":
            f["hash"] = hashlib.sha256(members["/ztcp/authz.rego"]).hexdigest()
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    members["/.signatures.json"] = json.dumps({"signatures": [f"{header}.{forged}.{signature}"]}).encode()
    _reject(_tar(members), signing_key, "bad_signature")


def test_extra_file_refused(bundle, signing_key):
    members = _members(bundle)
    members["/ztcp/backdoor.rego"] = b"package ztcp.authz\nimport rego.v1\ndecision := {}\n"
    _reject(_tar(members), signing_key, "unsigned_file", "ztcp/backdoor.rego")


def test_missing_file_refused(bundle, signing_key):
    members = _members(bundle)
    del members["/ztcp/authz_test.rego"]
    _reject(_tar(members), signing_key, "missing_file", "ztcp/authz_test.rego")


def test_changed_manifest_refused(bundle, signing_key):
    members = _members(bundle)
    manifest = json.loads(members["/.manifest"])
    manifest["revision"] = "r8"
    members["/.manifest"] = json.dumps(manifest).encode()
    _reject(_tar(members), signing_key, "digest_mismatch", ".manifest")


def test_two_signatures_refused(bundle, signing_key):
    members = _members(bundle)
    token = json.loads(members["/.signatures.json"])["signatures"][0]
    members["/.signatures.json"] = json.dumps({"signatures": [token, token]}).encode()
    _reject(_tar(members), signing_key, "malformed")


def test_not_an_archive(signing_key):
    _reject(b"definitely not a tarball", signing_key, "not_an_archive")
    _reject(gzip.compress(b"\0" * 100), signing_key, "not_an_archive")


def test_path_traversal_and_links_refused(bundle, signing_key):
    members = _members(bundle)
    members["/../escape.rego"] = b"package x"
    _reject(_tar(members), signing_key, "unsafe_path")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("/ztcp/link.rego")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    _reject(buf.getvalue(), signing_key, "unsafe_path")


def test_shadow_scope_never_verifies_as_active(pack, signing_key):
    shadow = build_bundle(pack, "r7", BundleSigner(signing_key, scope=SHADOW_SCOPE))
    _reject(shadow, signing_key, "bad_signature")
    assert verify_bundle(shadow, [signing_key.public_key()], scope=SHADOW_SCOPE).digest == pack.digest


def test_no_trusted_keys(bundle):
    with pytest.raises(BundleRejected) as err:
        verify_bundle(bundle, [])
    assert err.value.reason == "unknown_key"


def test_keys_by_explicit_kid(bundle, signing_key):
    kid = key_id(signing_key.public_key())
    assert verify_bundle(bundle, {kid: signing_key.public_key()}).revision == "r7"
    with pytest.raises(BundleRejected):
        verify_bundle(bundle, {"another-kid": signing_key.public_key()})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_flip_is_refused_or_harmless(bundle, pack, signing_key, data):
    """Flip any byte of the archive: either the bundle is refused or its content is unchanged
    (e.g. a flip in the gzip header's mtime/OS bytes)."""
    position = data.draw(st.integers(0, len(bundle) - 1))
    flip = data.draw(st.integers(1, 255))
    mutated = bytearray(bundle)
    mutated[position] ^= flip
    try:
        verified = verify_bundle(bytes(mutated), [signing_key.public_key()])
    except BundleRejected:
        return
    assert verified.files == pack.files and verified.digest == pack.digest


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=5), c, max_size=3)),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(doc=_JSON, indent=st.sampled_from([None, 2]))
def test_canonical_json_is_whitespace_independent_and_round_trips(doc, indent):
    raw = json.dumps(doc, indent=indent, ensure_ascii=bool(indent)).encode()
    canon = canonical_json(json.loads(raw))
    assert json.loads(canon) == doc
    assert canonical_json(json.loads(canon)) == canon
    assert file_hash("x/data.json", raw) == hashlib.sha256(canon).hexdigest()


def test_canonical_json_keeps_number_literals_and_go_escapes():
    raw = b'{"b": 1.50, "a": [1e3, "<&>", "\\u2028", "tab\\t", "\\u0001"]}'
    expected = '{"a":[1e3,"<&>","\\u2028","tab\\t","\\u0001"],"b":1.50}'
    assert hashlib.sha256(expected.encode()).hexdigest() == file_hash("data.json", raw)


def test_decompression_bomb_refused_by_declared_sizes(signing_key):
    """Sizes are checked from the tar headers before anything is read."""
    bomb = _tar({"/ztcp/config/data.json": b"{" + b" " * 4_000_000 + b"}"})
    assert len(bomb) < 20_000
    with pytest.raises(BundleRejected) as err:
        verify_bundle_full(bomb, [signing_key.public_key()], max_bytes=1_000_000)
    assert err.value.reason == "too_large"
