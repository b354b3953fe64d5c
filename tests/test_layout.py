"""The house rules: imports point downward only (docs/design.md, "Layout").

contracts  <-  domain (pdp, policy, provenance, keymgmt, siem_rules)  <-  application (gateway,
console, exchange, then server, the composition root)  <-  demo  <-  cli (click commands only).

Checked on the source with ``ast`` (every ``import`` and ``from … import``, also those inside
functions), so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contracts", "pdp", "policy", "provenance", "keymgmt", "siem_rules", "gateway", "console", "exchange",
            "server", "demo", "cli")
DOMAIN = {"pdp", "policy", "provenance", "keymgmt", "siem_rules"}
# What each package may import besides itself (and the standard library and third parties).
ALLOWED: dict[str, set[str]] = {
    "contracts": set(),
    "policy": {"contracts"},
    "provenance": {"contracts"},
    "pdp": {"contracts", "policy"},
    "keymgmt": {"contracts", "pdp"},  # pdp: verifying the decision token before decrypting
    "siem_rules": {"contracts"},  # the events it reads are contracts; it knows no producer
    "gateway": {"contracts"} | DOMAIN,
    "console": {"contracts"} | DOMAIN,
    "exchange": {"contracts"} | DOMAIN,  # application level, like gateway: government data exchange
    "server": {"contracts", "gateway", "console", "exchange"} | DOMAIN,
    "demo": {"contracts", "gateway", "exchange", "server"} | DOMAIN,
    "cli": {"contracts", "server", "demo", "exchange"} | DOMAIN,
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_every_package_is_a_package_and_listed() -> None:
    for name in PACKAGES:
        assert (ROOT / name / "__init__.py").is_file(), f"{name}/ has no __init__.py"
    assert set(ALLOWED) == set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_downward(package: str) -> None:
    allowed = ALLOWED[package] | {package}
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, top in _imports(path):
            if top in PACKAGES and top not in allowed:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    assert not wrong, f"{package} may import only {sorted(allowed)}:\n" + "\n".join(wrong)


def test_the_checker_sees_a_lazy_upward_import(tmp_path: Path) -> None:
    """The rule is only as good as the parser: an import inside a function must be found too."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from server.runtime import Runtime\n    import cli.main\n")
    assert [top for _, top in _imports(module)] == ["server", "cli"]
