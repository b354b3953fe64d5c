"""Find where a value lives in a JSON or YAML document, so data problems point at ``file:line:col``.

jsonschema reports an error by its path inside the instance (``["risk", "thresholds", "deny"]``);
officers need the position in the file they edit. JSON is scanned with the standard library's own
string and value decoders (no second JSON grammar to get wrong); YAML positions come from PyYAML's
composed node tree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.decoder import scanstring  # type: ignore[attr-defined]  # exported at run time; typeshed: on _json only

import yaml

_WS = " \t\n\r"
_DECODER = json.JSONDecoder()

PathPart = str | int


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _json_offset(text: str, path: Sequence[PathPart]) -> tuple[int, int]:
    """Offset of the deepest value along ``path`` and how many path parts were matched."""
    pos = _skip_ws(text, 0)
    matched = 0
    for part in path:
        if pos >= len(text):
            break
        opener = text[pos]
        if opener == "{" and isinstance(part, str):
            found = None
            pos = _skip_ws(text, pos + 1)
            while pos < len(text) and text[pos] != "}":
                key, pos = scanstring(text, pos + 1)
                pos = _skip_ws(text, pos)
                pos = _skip_ws(text, pos + 1)  # ':'
                if key == part:
                    found = pos  # JSON keeps the last duplicate; so do we (keep scanning)
                _, pos = _DECODER.raw_decode(text, pos)
                pos = _skip_ws(text, pos)
                if pos < len(text) and text[pos] == ",":
                    pos = _skip_ws(text, pos + 1)
            if found is None:
                return _back_to_container(text, path, matched)
            pos = found
        elif opener == "[" and isinstance(part, int):
            pos = _skip_ws(text, pos + 1)
            index = 0
            found = None
            while pos < len(text) and text[pos] != "]":
                if index == part:
                    found = pos
                    break
                _, pos = _DECODER.raw_decode(text, pos)
                pos = _skip_ws(text, pos)
                if pos < len(text) and text[pos] == ",":
                    pos = _skip_ws(text, pos + 1)
                index += 1
            if found is None:
                return _back_to_container(text, path, matched)
            pos = found
        else:
            break
        matched += 1
    return pos, matched


def _back_to_container(text: str, path: Sequence[PathPart], matched: int) -> tuple[int, int]:
    pos, _ = _json_offset(text, path[:matched]) if matched else (_skip_ws(text, 0), 0)
    return pos, matched


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of ``offset``."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def locate_json(text: str, path: Sequence[PathPart]) -> tuple[int, int, int]:
    """(line, col, parts matched) of the value at ``path`` (or its deepest existing ancestor)."""
    offset, matched = _json_offset(text, path)
    line, col = line_col(text, offset)
    return line, col, matched


def locate_yaml(text: str, path: Sequence[PathPart]) -> tuple[int, int, int]:
    node = yaml.compose(text)
    if node is None:
        return 1, 1, 0
    matched = 0
    for part in path:
        nxt = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    nxt = value
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            nxt = node.value[part]
        if nxt is None:
            break
        node = nxt
        matched += 1
    return node.start_mark.line + 1, node.start_mark.column + 1, matched


def locate(name: str, text: str, path: Sequence[PathPart]) -> tuple[int, int, int]:
    if name.endswith(".json"):
        return locate_json(text, path)
    return locate_yaml(text, path)
