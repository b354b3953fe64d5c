"""``ztcp policy diff``: unified diff of modules and data between two packs (revisions or a directory).

Files are compared as text, path by path (added and removed files diff against nothing). Data files
are also compared as *data*: when the merged ``data`` documents differ, a diff of their canonical
pretty-printed JSON follows, so a reformatted-but-equal data file shows no data change and a moved
key shows where it went.
"""

from __future__ import annotations

import difflib
import json

from policy.pack import PolicyPack


def _lines(raw: bytes | None) -> list[str]:
    if raw is None:
        return []
    text = raw.decode("utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def diff_packs(old: PolicyPack, new: PolicyPack, old_label: str, new_label: str, *, context: int = 3) -> str:
    """Unified diff text (empty when the packs have the same content)."""
    if old.digest == new.digest:
        return ""
    chunks: list[str] = []
    for name in sorted(set(old.files) | set(new.files)):
        a, b = old.files.get(name), new.files.get(name)
        if a == b:
            continue
        chunks.extend(
            difflib.unified_diff(
                _lines(a),
                _lines(b),
                fromfile=f"{old_label}/{name}" if a is not None else "/dev/null",
                tofile=f"{new_label}/{name}" if b is not None else "/dev/null",
                n=context,
            )
        )
    if old.data != new.data:
        chunks.extend(
            difflib.unified_diff(
                _lines(json.dumps(old.data, indent=2, sort_keys=True).encode() + b"\n"),
                _lines(json.dumps(new.data, indent=2, sort_keys=True).encode() + b"\n"),
                fromfile=f"{old_label}:data (merged)",
                tofile=f"{new_label}:data (merged)",
                n=context,
            )
        )
    return "".join(chunks)


def changed_files(old: PolicyPack, new: PolicyPack) -> dict[str, list[str]]:
    names_old, names_new = set(old.files), set(new.files)
    return {
        "added": sorted(names_new - names_old),
        "removed": sorted(names_old - names_new),
        "modified": sorted(n for n in names_old & names_new if old.files[n] != new.files[n]),
    }
