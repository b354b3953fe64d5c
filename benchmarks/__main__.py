"""`make bench`: run every benchmarks/bench_*.py, write results/*.json, print the README table.

    python -m benchmarks [--quick] [AREA ...]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from pathlib import Path

from benchmarks.common import RESULTS

HERE = Path(__file__).resolve().parent


def table() -> str:
    lines = ["| area | figure | value | target | anchor (same run) |", "|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("*.json")):
        doc = json.loads(path.read_text())
        for row in doc["results"]:
            mark = {True: " ✅", False: " ❌"}.get(row.get("meets_target"), "")
            lines.append(f"| {doc['benchmark']} | {row['name']} | {row['value']:,} {row['unit']}{mark} | "
                         f"{row.get('target', '')} | {row.get('anchor', '')} |")
    return "\n".join(lines)


def update_readme(readme: Path = HERE.parent / "README.md") -> None:
    """Replace the table between the bench-table markers in the README with the latest results."""
    text = readme.read_text()
    start, end = "<!-- bench-table -->", "<!-- /bench-table -->"
    if start not in text or end not in text:
        raise SystemExit("README.md has no bench-table markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table()}\n{end}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes (each area < 60 s)")
    parser.add_argument("--table", action="store_true", help="only print the table of the latest results")
    parser.add_argument("--readme", action="store_true", help="only rewrite README.md's table from the results")
    parser.add_argument("areas", nargs="*", help="e.g. pdp provenance keymgmt siem (default: all)")
    args = parser.parse_args()
    if args.table:
        print(table())
        return 0
    if args.readme:
        update_readme()
        return 0
    areas = args.areas or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    failed = []
    for area in areas:
        print(f"== {area}", flush=True)
        try:
            importlib.import_module(f"benchmarks.bench_{area}").main(quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(area)
    print(table())
    update_readme()
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
