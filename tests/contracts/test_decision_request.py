"""The decision request's client address (contracts.decision.Context.ip)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.decision import Context


def _ip(value: object) -> object:
    return Context.model_validate({"network_zone": "internal", "ip": value}).ip


@given(st.ip_addresses())
def test_every_address_is_read_as_the_standard_library_reads_it(address) -> None:  # noqa: ANN001
    assert _ip(str(address)) == address
    assert _ip(str(address)) is _ip(str(address))  # parsed once per distinct text


@pytest.mark.parametrize("text", ["10.1.2.x", "", "999.1.1.1", "1.2.3.4/24", "fe80::zz", "93-12-34 A123456789"])
def test_a_bad_address_is_one_error_naming_the_field_not_the_value(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _ip(text)
    errors = caught.value.errors(include_input=False)
    assert [(e["loc"], e["type"]) for e in errors] == [(("ip",), "ip_any_address")]
    assert text not in str(caught.value) or not text  # the message never echoes what was sent


def test_absent_and_non_text_addresses_are_as_before() -> None:
    assert _ip(None) is None
    assert _ip(ipaddress.ip_address("::1")) == ipaddress.IPv6Address("::1")
    with pytest.raises(ValidationError):
        _ip(b"1.2.3.4")
