"""`policy diff`: unified diff of modules and data."""

from __future__ import annotations

import json

from policy import changed_files, diff_packs, pack_from_files


def test_identical_packs_have_no_diff(base_files):
    assert diff_packs(pack_from_files(base_files), pack_from_files(dict(base_files)), "a", "b") == ""


def test_module_and_data_changes(base_files):
    new = dict(base_files)
    new["ztcp/authz.rego"] = base_files["ztcp/authz.rego"].replace(b'"risk_too_high"', b'"risk_way_too_high"')
    config = json.loads(base_files["ztcp/config/data.json"])
    config["thresholds"]["deny"] = 55
    new["ztcp/config/data.json"] = (json.dumps(config, indent=2) + "\n").encode()
    new["ztcp/extra.rego"] = b"package ztcp.extra\n"
    del new["ztcp/authz_test.rego"]
    text = diff_packs(pack_from_files(base_files), pack_from_files(new), "r1", "work")
    assert "--- r1/ztcp/authz.rego\n+++ work/ztcp/authz.rego\n" in text
    assert '-\t"reasons": ["risk_too_high"],\n+\t"reasons": ["risk_way_too_high"],\n' in text
    assert '-    "deny": 70\n+    "deny": 55\n' in text
    assert "--- /dev/null\n+++ work/ztcp/extra.rego\n" in text
    assert "--- r1/ztcp/authz_test.rego\n+++ /dev/null\n" in text
    assert "r1:data (merged)" in text  # the merged data view shows the semantic change too
    assert changed_files(pack_from_files(base_files), pack_from_files(new)) == {
        "added": ["ztcp/extra.rego"],
        "removed": ["ztcp/authz_test.rego"],
        "modified": ["ztcp/authz.rego", "ztcp/config/data.json"],
    }


def test_reformatted_data_shows_file_diff_but_no_data_diff(base_files):
    new = dict(base_files)
    new["ztcp/config/data.json"] = json.dumps(json.loads(base_files["ztcp/config/data.json"])).encode()
    text = diff_packs(pack_from_files(base_files), pack_from_files(new), "a", "b")
    assert "+++ b/ztcp/config/data.json" in text
    assert "No newline at end of file" in text
    assert "data (merged)" not in text
