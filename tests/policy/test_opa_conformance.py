"""Against a real OPA (ZTCP_OPA_URL): the pack in our bundle evaluates the same on OPA as on regorus.

OPA servers cannot run on this machine; the test is skipped with a visible reason unless
``ZTCP_OPA_URL`` points at one. It loads the modules and data through OPA's REST API under a
unique root, so it does not disturb bundles the server already serves.
"""

from __future__ import annotations

import json
import os
import uuid

import httpx
import pytest

from policy import build_bundle, pack_from_files, verify_bundle
from policy.engine import new_engine

pytestmark = [
    pytest.mark.opa,
    pytest.mark.skipif(not os.environ.get("ZTCP_OPA_URL"), reason="needs an OPA server: set ZTCP_OPA_URL"),
]


def test_bundle_content_evaluates_identically_on_opa(base_files, signing_key):
    pack = verify_bundle(build_bundle(pack_from_files(base_files), "r1", signing_key), [signing_key.public_key()])
    root = f"conf{uuid.uuid4().hex[:8]}"
    url = os.environ["ZTCP_OPA_URL"].rstrip("/")
    with httpx.Client(base_url=url, timeout=10) as opa:
        ids = []
        try:
            for path, source in sorted(pack.policy_modules.items()):
                moved = source.replace("package ztcp.", f"package {root}.").replace("data.ztcp.", f"data.{root}.")
                ids.append(f"{root}/{path}")
                opa.put(f"/v1/policies/{ids[-1]}", content=moved.encode()).raise_for_status()
            opa.put(f"/v1/data/{root}", json=pack.data["ztcp"]).raise_for_status()
            engine = new_engine(pack, include_tests=False)
            for action in ("read", "search", "export"):
                for denies in range(7):
                    doc = {
                        "action": action,
                        "resource": {"fields": ["name"]},
                        "signals": {"recent_denies_1h": denies},
                    }
                    engine.set_input(doc)
                    ours = engine.eval_rule("data.ztcp.authz.decision")
                    theirs = opa.post(f"/v1/data/{root}/authz/decision", json={"input": doc}).json()["result"]
                    assert json.loads(json.dumps(ours)) == theirs
        finally:
            for policy_id in ids:
                opa.delete(f"/v1/policies/{policy_id}")
            opa.delete(f"/v1/data/{root}")
