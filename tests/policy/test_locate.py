"""Locating values in JSON/YAML text: the position must be where the value really starts."""

from __future__ import annotations

import json

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.locate import line_col, locate_json, locate_yaml

_KEYS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=4)),
    max_leaves=25,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _get(value, path):
    for part in path:
        value = value[part]
    return value


def _offset(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    return sum(len(ln) + 1 for ln in lines[: line - 1]) + col - 1


@settings(max_examples=150, deadline=None)
@given(doc=_JSON, indent=st.sampled_from([None, 0, 1, 2, 4, "\t"]), ensure_ascii=st.booleans())
def test_every_json_path_points_at_its_value(doc, indent, ensure_ascii):
    text = json.dumps(doc, indent=indent, ensure_ascii=ensure_ascii)
    decoder = json.JSONDecoder()
    for path in _paths(doc):
        line, col, matched = locate_json(text, path)
        assert matched == len(path)
        value, _ = decoder.raw_decode(text, _offset(text, line, col))
        assert value == _get(doc, path)


@settings(max_examples=60, deadline=None)
@given(doc=st.dictionaries(st.text("abcxyz", min_size=1, max_size=4), _JSON, min_size=1, max_size=4))
def test_missing_path_falls_back_to_deepest_ancestor(doc):
    text = json.dumps(doc, indent=2)
    key = next(iter(doc))
    line, col, matched = locate_json(text, [key, "\u0000definitely-missing"])
    if isinstance(doc[key], dict):
        assert matched == 1
        value, _ = json.JSONDecoder().raw_decode(text, _offset(text, line, col))
        assert value == doc[key]
    else:
        assert matched in (0, 1)


def test_duplicate_keys_use_the_last_like_json_loads():
    text = '{"a": 1,\n "a": 2}'
    assert json.loads(text)["a"] == 2
    assert locate_json(text, ["a"])[:2] == (2, 7)


def test_yaml_positions():
    text = "a:\n  b:\n    - 1\n    - {c: 3}\n"
    assert yaml.safe_load(text)["a"]["b"][1]["c"] == 3
    assert locate_yaml(text, ["a", "b", 1, "c"]) == (4, 11, 4)
    assert locate_yaml(text, ["a", "zz"]) == (2, 3, 1)


def test_line_col_counts_characters():
    assert line_col("ab\ncé\tx", 6) == (2, 4)
