"""Key custodian: key versions, data keys and rows per version (read-only)."""

from __future__ import annotations

import re

import keymgmt


def test_keys_page_shows_versions_deks_and_rows(browser, world) -> None:  # noqa: ANN001
    rt, _, _ = world
    browser.sign_in("emp-key-1")
    r = browser.client.get("/console/keys")
    assert r.status_code == 200
    for info in rt.key_provider.list():
        assert f"<td>{info.name}</td>" in r.text
    assert "Protected table insured_persons (dataset insured_persons)" in r.text
    assert "2 rows, 0 still plaintext." in r.text
    (spec,) = keymgmt.registered_specs(rt.protected_engine)
    status = keymgmt.table_status(rt.protected_reader(spec.dataset).table)
    for dek in status["rows_by_dek"]:
        assert dek["dek_id"] in r.text
    assert "version 1: 2 rows" in r.text
    assert not re.search(r"<form[^>]*method=\"post\"[^>]*action=\"/console/keys", r.text)  # read-only
