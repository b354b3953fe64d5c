"""``ztcp demo``: a synthetic social-insurance bureau and a simulated week of real traffic."""

from demo.errors import AlreadySeeded, DemoError, IncidentMissed, ReadsUnrecorded
from demo.people import PeopleFactory, Person, check_digit, is_valid_national_id, national_id_checksum_ok
from demo.seed import SeedOptions, SeedReport, seed

__all__ = [
    "AlreadySeeded",
    "DemoError",
    "IncidentMissed",
    "PeopleFactory",
    "Person",
    "ReadsUnrecorded",
    "SeedOptions",
    "SeedReport",
    "check_digit",
    "is_valid_national_id",
    "national_id_checksum_ok",
    "seed",
]
