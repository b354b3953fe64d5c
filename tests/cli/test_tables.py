"""CLI tables are printed whole: an id cut to "al_31…" cannot be pasted into the next command."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from cli.tables import print_table

LONG_ID = "al_3198fdf8f0eb4e8a9570"
LONG_REF = "cr_K34MHQW7H4RRA3NNHE2ZRSJZ2BOUYUISS2GC5K5SBBW4E6IDOW5Q"


def _table() -> Table:
    t = Table("id", "rule", "group", title="alerts")
    t.add_row(LONG_ID, "fraud_broker_read_then_account_change", f"citizen_ref={LONG_REF}")
    return t


def test_a_table_wider_than_the_terminal_is_printed_whole() -> None:
    out = io.StringIO()
    print_table(_table(), Console(file=out, width=40))
    text = out.getvalue()
    assert LONG_ID in text and LONG_REF in text and "fraud_broker_read_then_account_change" in text
    assert "…" not in text


def test_a_table_that_fits_keeps_the_terminal_width() -> None:
    out = io.StringIO()
    small = Table("id")
    small.add_row("x")
    print_table(small, Console(file=out, width=100))
    assert max(len(line) for line in out.getvalue().splitlines()) <= 100
