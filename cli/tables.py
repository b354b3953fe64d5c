"""Printing rich tables so that nothing an operator copies from them is cut.

Rich fits a table to the terminal (80 columns when output is piped) by truncating cells with "…",
which silently breaks the ids people paste into the next command (`ztcp siem ack al_…`). Tables
here are printed at their natural width instead, like `kubectl get`: a narrow terminal wraps the
line rather than the tool dropping characters. Scripts should use `--json`.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_table(table: Table, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if natural > console.width:
        console = Console(width=natural, highlight=False, file=console.file, force_terminal=console.is_terminal,
                          no_color=console.no_color)
    console.print(table)
