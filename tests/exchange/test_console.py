"""The console's trace shows a citizen's exchange transfers with their receipt and time-stamp status,
and each event's TSA time bound."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from exchange.service import receipt_for
from server.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def _helper(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "helpers" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ew = _helper("exchange_world")
tsa_helper = _helper("tsa")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
LOGIN_CSRF = re.compile(r'name="csrf" id="login-csrf" value="([^"]+)"')


@pytest.fixture
def tsa(tmp_path: Path):
    with tsa_helper.TestTsa(tmp_path / "tsa") as t:
        yield t


def test_the_trace_page_lists_transfers_with_receipt_and_timestamp_status(ztcp_home: Path, tmp_path: Path, tsa,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZTCP_CONSOLE_MANAGED_DEVICES", "true")
    w = ew.World(ztcp_home, n=6, tsa_url=tsa.url, tsa_ca_file=str(tsa.ca_file))
    try:
        (ztcp_home / "directory.json").write_text(json.dumps({
            "version": 1, "seed": 0, "generated_at": "2026-12-01T00:00:00Z",
            "offices": [{"id": "hq", "name": "總局", "name_en": "HQ"}],
            "staff": [{"id": "aud-01", "display_name": "Auditor", "office": "hq", "roles": ["auditor"],
                       "auth_method": "fido2", "mfa": True, "device": {"id": "dev-aud", "managed": True,
                                                                        "compliant": True}}]}))
        svc = w.rt.exchange
        acked = svc.send(w.operator(), "DSA-2026-001", w.input_file(tmp_path / "a.csv", [1, 2]), tmp_path / "a")
        svc.record_receipt(receipt_for(tmp_path / "a", w.tax.signing))
        w.rt.ledger.checkpoint()
        w.rt.stamper.flush(30)
        tsa.down = True  # the second transfer is signed while the TSA is unreachable
        pending = svc.send(w.operator(), "DSA-2026-001", w.input_file(tmp_path / "b.csv", [1]), tmp_path / "b")
        with TestClient(create_app(w.rt), client=("127.0.0.1", 50000), follow_redirects=False) as client:
            r = client.get("/console/signin")
            token = LOGIN_CSRF.search(r.text).group(1)
            assert client.post("/console/signin/dev", data={"csrf": token, "staff": "aud-01"}).status_code == 303
            csrf = CSRF.search(client.get("/console/audit").text).group(1)
            page = client.post("/console/audit/trace", data={"csrf": csrf, "citizen_ref": w.ref(1)})
        assert page.status_code == 200, page.text[:500]
        html = page.text
        table = html[html.index('id="transfers"'):html.index("</table>", html.index('id="transfers"'))]
        row = re.compile(r"<tr class=\"receipt-\w+\">.*?<code>(xfer_\w+)</code>.*?</tr>", re.S)
        rows = {m.group(1): m.group(0) for m in row.finditer(table)}
        assert "received" in rows[acked["transfer_id"]] and "time-stamped (TSA)" in rows[acked["transfer_id"]]
        assert "outstanding" in rows[pending["transfer_id"]] and "pending" in rows[pending["transfer_id"]]
        assert "Recorded by (TSA)" in html and "(checkpoint " in html  # the first disclosure is time-bounded
        assert w.people[1][0] not in html
    finally:
        w.close()
