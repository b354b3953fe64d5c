"""`ztcp exchange …` at the command line: one-line errors and the documented exit codes
(0 ok, 1 bad input, 2 refused, 3 does not verify), the agency's tools, the agreements listing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import ztcp

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("exchange_world", ROOT / "tests" / "helpers" / "exchange_world.py")
ew = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ew)


@pytest.fixture
def world(ztcp_home: Path, monkeypatch: pytest.MonkeyPatch):
    w = ew.World(ztcp_home, n=8)
    token = w.rt.issuer.issue_subject("emp-xo-1", ["exchange_officer"], method="fido2", mfa=True, org_unit="x")
    monkeypatch.setenv("ZTCP_TOKEN", token)
    yield w
    w.close()


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(ztcp, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_send_verify_open_acknowledge_and_the_exit_codes(world, tmp_path: Path) -> None:
    inp = world.input_file(tmp_path / "in.csv", [1, 2, 3])
    out = tmp_path / "out"
    code, stdout, err = run("exchange", "send", "--agreement", "DSA-2026-001", "--input", str(inp),
                            "--output", str(out), "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["citizens"] == 3 and summary["timestamp"] == "none"
    code, stdout, _ = run("exchange", "verify", str(out), "--json")
    assert code == 0 and json.loads(stdout)["ok"]

    # The agency's side: its keys, opening the payload, signing the receipt; the bureau records it.
    keys = tmp_path / "agency"
    keys.mkdir()
    (keys / "decryption.jwk").write_text(json.dumps(_private(world.tax.decryption)))
    (keys / "signing.jwk").write_text(json.dumps(_private(world.tax.signing)))
    code, _, err = run("exchange", "open", str(out), "--key", str(keys / "decryption.jwk"), "-o",
                       str(tmp_path / "records.jsonl"))
    assert code == 0 and "wrote 3 record(s)" in err
    assert [json.loads(x)["name"] for x in (tmp_path / "records.jsonl").read_text().splitlines()] == \
        [world.people[i][1] for i in (1, 2, 3)]
    code, _, _ = run("exchange", "acknowledge", str(out), "--key", str(keys / "signing.jwk"), "-o",
                     str(tmp_path / "receipt.jws"))
    assert code == 0
    code, stdout, err = run("exchange", "receipt", str(tmp_path / "receipt.jws"))
    assert code == 0 and "receipt recorded" in stdout, err
    code, stdout, _ = run("exchange", "verify", str(out), "--require-receipt")
    assert code == 0 and "verified" in stdout

    code, stdout, _ = run("exchange", "agreements", "--json")
    rows = {r["agreement_id"]: r for r in json.loads(stdout)}
    assert rows["DSA-2026-001"]["transfers"] == 1 and rows["DSA-2026-001"]["receipts_outstanding"] == 0
    assert rows["DSA-2020-OLD"]["status"] == "expired" and rows["DSA-2026-SUSP"]["status"] == "suspended"

    (out / "payload.ztcp").write_bytes((out / "payload.ztcp").read_bytes() + b"x")
    code, _, err = run("exchange", "verify", str(out))
    assert code == 3 and err.startswith("ztcp: error: transfer xfer_") and "payload failed" in err
    assert err.count("\n") == 1


def _private(key) -> dict:  # noqa: ANN001
    from exchange.crypto import private_jwk

    return private_jwk(key)


def test_refusals_and_bad_input_exit_2_and_1_with_one_line(world, tmp_path: Path) -> None:
    inp = world.input_file(tmp_path / "in.csv", [1])
    code, _, err = run("exchange", "send", "--agreement", "DSA-2026-SUSP", "--input", str(inp), "--output",
                       str(tmp_path / "o1"))
    assert code == 2 and "suspended" in err and err.count("\n") == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("national_id\n" + world.people[1][0] + "\nnot-an-id\n")
    code, _, err = run("exchange", "send", "--agreement", "DSA-2026-001", "--input", str(bad), "--output",
                       str(tmp_path / "o2"))
    assert code == 1 and "input line 3" in err and "not-an-id" not in err
    code, _, err = run("exchange", "send", "--agreement", "DSA-2026-001", "--input", str(inp), "--output",
                       str(tmp_path / "o3"), "--token", "@" + str(tmp_path / "missing"))
    assert code == 1
