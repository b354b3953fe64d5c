"""National ID numbers and synthetic people: the official checksum, validators, determinism."""

from __future__ import annotations

import random
import string
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import contracts
from contracts.national_id import _LETTER_CODES as LETTER_CODES  # noqa: PLC2701 - the one checksum table
from demo.people import (
    SALARY_GRADES,
    PeopleFactory,
    check_digit,
    is_valid_national_id,
    make_national_id,
    national_id_checksum_ok,
)

# A123456789 is the textbook example. The others are worked by hand (letter code split into two digits,
# weights 1,9,8,7,6,5,4,3,2,1,1; the sum must end in 0), covering the out-of-order letters I, O, W:
#   F131104093: F=15 → 1+45 = 46; 8+21+6+5+0+12+0+9 = 61; +3 → 110
#   O100000004: O=35 → 3+45 = 48; 8 → 56; +4 → 60
#   I234567895: I=34 → 3+36 = 39; 16+21+24+25+24+21+16+9 = 156; +5 → 200
#   W199999999: W=32 → 3+18 = 21; 8 + 9×28 = 260; +9 → 290
VALID = ["A123456789", "F131104093", "O100000004", "I234567895", "W199999999"]
INVALID = ["A123456788", "F131104094", "I234567894", "A323456789", "1123456789", "A12345678", "A1234567890",
           "AA23456789", "A12345678X", ""]

TODAY = date(2026, 11, 22)
prefixes = st.tuples(st.sampled_from(sorted(LETTER_CODES)), st.sampled_from("12"),
                     st.text(alphabet=string.digits, min_size=7, max_size=7)).map("".join)


def test_letter_table_is_the_official_one() -> None:
    assert len(LETTER_CODES) == 26 and sorted(LETTER_CODES.values()) == list(range(10, 36))
    assert (LETTER_CODES["I"], LETTER_CODES["O"], LETTER_CODES["W"], LETTER_CODES["Z"]) == (34, 35, 32, 33)


@pytest.mark.parametrize("nid", VALID)
def test_known_valid_numbers(nid: str) -> None:
    assert national_id_checksum_ok(nid) and is_valid_national_id(nid)
    assert contracts.normalise_national_id(nid) == nid  # the ledger's validator agrees


@pytest.mark.parametrize("nid", INVALID)
def test_known_invalid_numbers(nid: str) -> None:
    assert not national_id_checksum_ok(nid) and not is_valid_national_id(nid)


def test_validator_tolerates_case_and_space_but_not_junk() -> None:
    assert is_valid_national_id(" a123456789 ")
    assert not is_valid_national_id(None)  # type: ignore[arg-type]
    assert not national_id_checksum_ok("a123456789")  # the strict form is upper case


@given(prefixes)
def test_check_digit_completes_exactly_one_valid_number(prefix: str) -> None:
    valid = [d for d in string.digits if national_id_checksum_ok(prefix + d)]
    assert valid == [check_digit(prefix)]


@given(prefixes, st.sampled_from(string.digits))
def test_our_checksum_agrees_with_the_provenance_validator(prefix: str, last: str) -> None:
    nid = prefix + last
    try:
        contracts.normalise_national_id(nid)
        theirs = True
    except contracts.InvalidNationalId:
        theirs = False
    assert national_id_checksum_ok(nid) is theirs


@given(st.integers(min_value=0, max_value=2**32), st.sampled_from("MF"))
def test_generated_numbers_are_valid_and_carry_the_sex_digit(seed: int, sex: str) -> None:
    nid = make_national_id(random.Random(seed), sex)
    assert national_id_checksum_ok(nid)
    assert nid[1] == ("1" if sex == "M" else "2")


@given(st.text(max_size=12))
@settings(max_examples=300)
def test_validator_never_raises_on_arbitrary_text(text: str) -> None:
    assert is_valid_national_id(text) in (True, False)


def test_check_digit_rejects_bad_prefixes() -> None:
    for bad in ("A1234567", "11234567X", "a12345678", "A1234567a"):
        with pytest.raises(ValueError):
            check_digit(bad)


def test_people_are_deterministic_for_a_seed_and_differ_across_seeds() -> None:
    a = [PeopleFactory(11).person(today=TODAY) for _ in range(1)]
    one, two = PeopleFactory(11), PeopleFactory(11)
    run1 = [one.person(today=TODAY) for _ in range(50)]
    run2 = [two.person(today=TODAY) for _ in range(50)]
    assert run1 == run2 and run1[0] == a[0]
    other = [PeopleFactory(12).person(today=TODAY) for _ in range(50)]
    assert run1 != other


def test_people_look_taiwanese_and_have_the_right_shapes() -> None:
    factory = PeopleFactory(3)
    people = [factory.person(today=TODAY) for _ in range(300)]
    assert len({p.national_id for p in people}) == 300  # unique
    for p in people:
        assert national_id_checksum_ok(p.national_id)
        assert p.national_id[1] == ("1" if p.sex == "M" else "2")
        assert 2 <= len(p.name) <= 4 and all("\u4e00" <= ch <= "\u9fff" for ch in p.name)
        assert p.phone.startswith("09") and len(p.phone.replace("-", "")) == 10
        code, _, account = p.bank_account.partition("-")
        assert len(code) == 3 and code.isdigit() and len(account) == 12 and account.isdigit()
        age = (TODAY - p.birth_date).days // 365
        assert 18 <= age <= 92
        assert p.insured_salary in SALARY_GRADES
        if age >= 65:
            assert p.insurance_type == "labour_pension"
