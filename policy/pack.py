"""A policy pack: the Rego modules and data documents of one directory, with a content digest.

Layout follows OPA bundles: every ``*.rego`` file is a module; every ``data.json`` / ``data.yaml``
is merged into ``data`` at the path of its directory (``foo/bar/data.json`` → ``data.foo.bar``).
The digest covers file names and bytes, so two packs with the same digest evaluate identically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policy.errors import PackError

DEFAULT_PACK_DIR = Path(__file__).resolve().parent / "rego"
_DATA_NAMES = ("data.json", "data.yaml", "data.yml")
_SKIP_DIRS = {".git", "__pycache__", ".manifest"}


@dataclass(frozen=True)
class PolicyPack:
    root: Path | None
    modules: dict[str, str]  # relative path → source
    data: dict[str, Any]
    digest: str  # "sha256:<hex>" over sorted (path, bytes)
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # every pack file, raw
    revision: str | None = None  # set when the pack comes from a revision or a verified bundle

    @property
    def test_modules(self) -> dict[str, str]:
        return {p: s for p, s in self.modules.items() if p.endswith("_test.rego")}

    @property
    def policy_modules(self) -> dict[str, str]:
        return {p: s for p, s in self.modules.items() if not p.endswith("_test.rego")}


def digest_files(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        raw = files[name]
        h.update(name.encode() + b"\0" + len(raw).to_bytes(8, "big") + raw)
    return "sha256:" + h.hexdigest()


def _merge_at(data: dict[str, Any], parts: list[str], doc: Any, source: str) -> None:
    node = data
    for part in parts:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise PackError(f"{source}: data path conflicts with a non-object value at {'.'.join(parts)}")
        node = nxt
    if not isinstance(doc, dict):
        raise PackError(f"{source}: a data document must be a JSON/YAML object")
    for key, value in doc.items():
        if key in node and isinstance(node[key], dict) and isinstance(value, dict):
            _merge_at(node, [key], value, source)
        elif key in node:
            raise PackError(f"{source}: data key {'.'.join([*parts, key])} is defined twice")
        else:
            node[key] = value


def parse_data_file(name: str, raw: bytes) -> Any:
    try:
        if name.endswith(".json"):
            return json.loads(raw)
        return yaml.safe_load(raw) or {}
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None) or getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{name}:{line}" if line is not None else name
        raise PackError(f"{where}: invalid data document: {exc}") from None


def merge_data(files: dict[str, bytes]) -> dict[str, Any]:
    """The ``data`` document of a pack: every data.json / data.yaml at its directory's path."""
    data: dict[str, Any] = {}
    for name in sorted(files):
        if name.rsplit("/", 1)[-1] in _DATA_NAMES:
            parts = [p for p in name.split("/")[:-1] if p]
            _merge_at(data, parts, parse_data_file(name, files[name]), name)
    return data


def pack_from_files(files: dict[str, bytes], root: Path | None = None, revision: str | None = None) -> PolicyPack:
    """Build a pack from relative path → bytes (a directory, a revision, or a bundle's files)."""
    modules: dict[str, str] = {}
    for name in sorted(files):
        if name.endswith(".rego"):
            try:
                modules[name] = files[name].decode("utf-8")
            except UnicodeDecodeError:
                raise PackError(f"{name}: not UTF-8") from None
    data = merge_data(files)
    if not any(not p.endswith("_test.rego") for p in modules):
        raise PackError(f"no policy modules (*.rego) in {root or 'the given files'}")
    return PolicyPack(
        root=root,
        modules=modules,
        data=data,
        digest=digest_files(files),
        files=dict(files),
        revision=revision,
    )


def read_pack_files(root: Path) -> dict[str, bytes]:
    root = Path(root)
    if not root.is_dir():
        raise PackError(f"policy directory not found: {root}")
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix in {".rego", ".json", ".yaml", ".yml"}:
            files[rel.as_posix()] = path.read_bytes()
    return files


# The bureau's registers that shape decisions: which agencies have agreements, which citizens are
# protected, how datasets are classified and which fields they register. They change only through
# a signed, approved revision (bureau/data.json in the pack); cases and consents are operational
# facts that the live feed (ZTCP_HOME/bureau-data.json) supplies between revisions.
GOVERNED_REGISTERS = ("agreements", "protected_citizens", "datasets")
REGISTERS_FILE = "bureau/data.json"


def with_registers(pack: PolicyPack, registers: dict[str, Any]) -> PolicyPack:
    """``pack`` with its governed registers (``bureau/data.json``) replaced by ``registers`` —
    a candidate for propose / approve / publish."""
    unknown = sorted(set(registers) - set(GOVERNED_REGISTERS))
    if unknown:
        raise PackError(f"not governed registers: {', '.join(unknown)} (only {', '.join(GOVERNED_REGISTERS)})")
    current = json.loads(pack.files.get(REGISTERS_FILE, b"{}"))
    files = dict(pack.files)
    files[REGISTERS_FILE] = json.dumps({**current, **registers}, ensure_ascii=False, indent=1,
                                       sort_keys=True).encode()
    return pack_from_files(files, root=None)


def load_pack(root: Path | str | None = None) -> PolicyPack:
    """Load the pack in ``root`` (default: the bundled bureau pack)."""
    directory = Path(root) if root is not None else DEFAULT_PACK_DIR
    return pack_from_files(read_pack_files(directory), root=directory)
