"""Masking obligations."""

from __future__ import annotations

import pytest

from keymgmt import apply_masks, mask_value


@pytest.mark.parametrize(
    ("value", "style", "want"),
    [
        ("0912345678", "last4", "******5678"),
        ("123", "last4", "***"),
        ("Chen", "first1", "C***"),
        ("a.b@example.tw", "email", "***@example.tw"),
        ("1980-05-17", "year", "1980-**-**"),
        ("secret", "full", "******"),
        ("secret", "no-such-style", "******"),  # unknown styles fail closed
        ("", "last4", ""),
    ],
)
def test_styles(value: str, style: str, want: str) -> None:
    assert mask_value(value, style) == want


def test_apply_only_mask_obligations_on_present_fields() -> None:
    values = {"phone": "0912345678", "national_id": "A123456789", "email": None}
    out = apply_masks(values, [
        {"type": "mask", "field": "phone", "style": "last4"},
        {"type": "mask", "field": "email", "style": "email"},
        {"type": "mask", "field": "absent", "style": "full"},
        {"type": "watermark", "field": "national_id"},
        "garbage",
    ])
    assert out == {"phone": "******5678", "national_id": "A123456789", "email": None}
    assert values["phone"] == "0912345678"
