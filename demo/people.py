"""Synthetic insured people: plausible Taiwanese identities that are deterministic for a seed.

National ID numbers (國民身分證統一編號) are a letter for the household-registration area, a sex digit
(1 male, 2 female) and 8 digits, the last of them a check digit: the letter becomes two digits
(A=10 … Z=33, in the official irregular order), the eleven digits are weighted 1,9,8,7,6,5,4,3,2,1,1
and the sum must be a multiple of 10. A123456789 is the textbook valid example.

Names, addresses and companies come from Faker's ``zh_TW`` locale; phones, bank accounts, birth
dates and insured salaries are drawn here so they have the right shapes (mobile 09xx-xxx-xxx, bank
code + account, labour-insurance salary grades). Nothing here is a real person.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from faker import Faker

import contracts

# Letters still issued, weighted roughly by population (Taipei, New Taipei, Taichung, Kaohsiung …).
_AREA_LETTERS = "AAAAFFFFFBBBBEEEEHHHDDDPTNRKJGMQUVIXZCWO"
# Monthly insured-salary grades of labour insurance (NT$), lowest = the minimum wage.
SALARY_GRADES = (29500, 30300, 31800, 33300, 34800, 36300, 38200, 40100, 42000, 43900, 45800)
BANK_CODES = ("004", "005", "006", "007", "008", "009", "011", "012", "013", "017", "700", "803", "808",
              "812", "822")


def national_id_checksum_ok(nid: str) -> bool:
    """True when ``nid`` is a citizen's ID (letter + [12] + 8 digits) whose check digit fits (the
    checksum is provenance's, the one every national ID in ztcp is validated with)."""
    if len(nid) != 10 or not nid[1:].isdigit() or nid[1] not in "12":
        return False
    try:
        return contracts.normalise_national_id(nid) == nid
    except contracts.InvalidNationalId:
        return False


def is_valid_national_id(value: str) -> bool:
    """Validator for user input: surrounding space and a lowercase letter are tolerated."""
    if not isinstance(value, str):
        return False
    nid = value.strip().upper()
    return national_id_checksum_ok(nid)


def check_digit(prefix: str) -> str:
    """The check digit completing ``prefix`` (letter + 8 digits) into a valid national ID."""
    try:
        return contracts.national_id_check_digit(prefix)
    except contracts.InvalidNationalId as exc:
        raise ValueError(str(exc)) from None


def make_national_id(rng: random.Random, sex: str) -> str:
    letter = rng.choice(_AREA_LETTERS)
    body = ("1" if sex == "M" else "2") + "".join(rng.choice("0123456789") for _ in range(7))
    prefix = letter + body
    return prefix + check_digit(prefix)


@dataclass(frozen=True)
class Person:
    national_id: str
    name: str
    sex: str
    birth_date: date
    address: str
    phone: str
    bank_account: str
    employer: str
    insured_salary: int
    insurance_type: str


class PeopleFactory:
    """Deterministic people for one seed: the same seed gives the same people in the same order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.faker = Faker("zh_TW")
        self.faker.seed_instance(seed)
        self._issued: set[str] = set()
        self.employers = [self.faker.company() for _ in range(120)]

    def national_id(self, sex: str) -> str:
        while True:  # 10^7 numbers per letter and sex: a clash is rare, but IDs must be unique
            nid = make_national_id(self.rng, sex)
            if nid not in self._issued:
                self._issued.add(nid)
                return nid

    def mobile(self) -> str:
        d = "".join(self.rng.choice("0123456789") for _ in range(8))
        return f"09{d[:2]}-{d[2:5]}-{d[5:]}"

    def bank_account(self) -> str:
        return self.bank_account_from(self.rng)

    @staticmethod
    def bank_account_from(rng: random.Random) -> str:
        """A bank code and a 12-digit account number."""
        return f"{rng.choice(BANK_CODES)}-{rng.randrange(10**11, 10**12):012d}"

    def person(self, *, today: date, min_age: int = 18, max_age: int = 92) -> Person:
        rng, fk = self.rng, self.faker
        sex = rng.choice("MF")
        name = fk.name_male() if sex == "M" else fk.name_female()
        age_days = rng.randrange(min_age * 365, max_age * 365)
        birth = today - timedelta(days=age_days)
        age = age_days // 365
        if age >= 65:
            insurance, employer = "labour_pension", "無（已退休）"
        elif rng.random() < 0.08:
            insurance, employer = "national_pension", "無（國民年金）"
        else:
            insurance, employer = "labour", rng.choice(self.employers)
        salary = rng.choice(SALARY_GRADES) if insurance == "labour" else SALARY_GRADES[0]
        return Person(national_id=self.national_id(sex), name=name, sex=sex, birth_date=birth,
                      address=fk.address(), phone=self.mobile(), bank_account=self.bank_account(),
                      employer=employer, insured_salary=salary, insurance_type=insurance)
