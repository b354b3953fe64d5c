"""``ztcp demo``: a synthetic social-insurance bureau and a simulated week of real traffic."""

from cli.demo.errors import AlreadySeeded, DemoError, IncidentMissed, ReadsUnrecorded
from cli.demo.people import PeopleFactory, Person, check_digit, is_valid_national_id, national_id_checksum_ok
from cli.demo.seed import SeedOptions, SeedReport, seed

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
