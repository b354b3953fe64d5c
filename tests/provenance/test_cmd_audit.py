"""`ztcp audit …` through click's CliRunner, with real keys from the bootstrap keyring and real tokens."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from provenance_testkit import VALID_IDS, make_event

import contracts
import provenance
from cli.main import ztcp
from server.bootstrap import system_keys
from server.identity import dev_issuer
from server.ledger import ledger_from_settings
from server.settings import load_settings


@pytest.fixture
def seeded(ztcp_home: Path) -> dict:
    settings = load_settings()
    keys = system_keys(settings)
    ref = contracts.citizen_ref(VALID_IDS[0], keys.blind_index)
    other = contracts.citizen_ref(VALID_IDS[1], keys.blind_index)
    issuer = dev_issuer(settings, keys)
    with ledger_from_settings(settings, keys) as led:
        reads = [make_event(i, citizen_ref=ref) for i in range(3)]
        disclose = make_event(
            9,
            citizen_ref=ref,
            type="pii.disclose",
            recipient={"type": "agency", "id": "MOL", "name": "Ministry of Labor", "channel": "T-Road"},
            purpose={"code": "exchange", "legal_basis": "Labor Insurance Act art. 10"},
            derived_from=[reads[0].event_id, reads[1].event_id],
        )
        led.append([*reads, make_event(5, citizen_ref=other), disclose])
    return {
        "ref": ref,
        "auditor": issuer.issue_subject("auditor-7", ["auditor"], mfa=True, ttl_seconds=600),
        "clerk": issuer.issue_subject("clerk-1", ["counter_clerk"], ttl_seconds=600),
        "reads": reads,
        "disclose": disclose,
    }


def run(*args: str, env: dict | None = None, input: str | None = None):  # noqa: ANN201, A002
    return CliRunner().invoke(ztcp, list(args), env=env or {}, input=input, catch_exceptions=False)


def test_trace_json_by_national_id_is_proven_and_recorded(seeded: dict) -> None:
    r = run("audit", "trace", "--national-id", VALID_IDS[0].lower(), "--json", env={"ZTCP_TOKEN": seeded["auditor"]})
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["citizen_ref"] == seeded["ref"] and doc["all_verified"] is True
    types = [e["event"]["type"] for e in doc["events"]]
    assert types == ["pii.read", "pii.read", "pii.read", "pii.disclose", "audit.trace"]
    assert doc["events"][-1]["event"]["actor"]["id"] == "auditor-7"  # the query names the auditor
    assert {(li["derived_from"], li["source_seq"]) for li in doc["lineage"]} == {
        (seeded["reads"][0].event_id, 0),
        (seeded["reads"][1].event_id, 1),
    }
    assert VALID_IDS[0] not in r.stdout


def test_trace_national_id_from_stdin_and_table(seeded: dict) -> None:
    r = run(
        "audit",
        "trace",
        "--national-id",
        "-",
        env={"ZTCP_TOKEN": seeded["auditor"], "COLUMNS": "250"},
        input=VALID_IDS[0] + "\n",
    )
    assert r.exit_code == 0, r.output
    assert "verified" in r.stdout and "Ministry of Labor" in r.stdout


@pytest.mark.parametrize("fmt", ["csv", "html", "pdf"])
def test_trace_files(seeded: dict, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"report.{fmt}"
    r = run(
        "audit",
        "trace",
        "--citizen-ref",
        seeded["ref"],
        "--format",
        fmt,
        "-o",
        str(out),
        env={"ZTCP_TOKEN": seeded["auditor"]},
    )
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert out.stat().st_mode & 0o077 == 0
    if fmt == "pdf":
        assert data.startswith(b"%PDF-") and len(data) > 1500
    elif fmt == "html":
        text = data.decode()
        assert "<table" in text and "Lineage of disclosures" in text and "auditor-7" in text
        assert "every event proven included" in text
    else:
        lines = data.decode().splitlines()
        assert lines[0].startswith("seq,time,type") and len(lines) == 6


def test_trace_needs_auditor_role(seeded: dict) -> None:
    r = run("audit", "trace", "--citizen-ref", seeded["ref"])
    assert r.exit_code == 2 and "token" in r.output
    r = run("audit", "trace", "--citizen-ref", seeded["ref"], env={"ZTCP_TOKEN": seeded["clerk"]})
    assert r.exit_code == 2 and "auditor" in r.output


def test_trace_bad_input(seeded: dict) -> None:
    env = {"ZTCP_TOKEN": seeded["auditor"]}
    r = run("audit", "trace", "--national-id", "A123456788", env=env)
    assert r.exit_code == 1 and "check digit" in r.output and "A123456788" not in r.output
    assert run("audit", "trace", env=env).exit_code == 1
    assert run("audit", "trace", "--citizen-ref", "nope", env=env).exit_code == 1
    assert run("audit", "trace", "--citizen-ref", seeded["ref"], "--since", "yesterday", env=env).exit_code == 1


def test_trace_window(seeded: dict) -> None:
    r = run(
        "audit",
        "trace",
        "--citizen-ref",
        seeded["ref"],
        "--json",
        "--until",
        "2000-01-01",
        env={"ZTCP_TOKEN": seeded["auditor"]},
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["events"] == []


def test_verify_ok_then_tampered_exit_3(seeded: dict, ztcp_home: Path) -> None:
    r = run("audit", "verify", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ok"] is True and json.loads(r.stdout)["size"] == 5
    db = sqlite3.connect(ztcp_home / "provenance.db", isolation_level=None)
    body = db.execute("SELECT body FROM entries WHERE seq = 2").fetchone()[0]
    db.execute("UPDATE entries SET body = ? WHERE seq = 2", (bytes(body).replace(b"rec-2", b"rec-9"),))
    db.close()
    r = run("audit", "verify")
    assert r.exit_code == 3
    assert "seq 2" in r.output and "changed" in r.output
    r = run("audit", "verify", "--full", "--json")
    assert r.exit_code == 3 and json.loads(r.stdout.splitlines()[0])["seq"] == 2
    # and the auditor's trace flags the altered event too
    r = run("audit", "trace", "--citizen-ref", seeded["ref"], "--json", env={"ZTCP_TOKEN": seeded["auditor"]})
    assert r.exit_code == 3
    assert [e["proof"] for e in json.loads(r.stdout)["events"]][2] == "NOT VERIFIED"


def test_checkpoint_prints_signed_note(seeded: dict) -> None:
    r = run("audit", "checkpoint")
    assert r.exit_code == 0
    assert r.stdout.startswith("ztcp.local/provenance\n5\n") and "\n— ztcp.local/provenance " in r.stdout
    j = json.loads(run("audit", "checkpoint", "--json").stdout)
    v = provenance.NoteVerifier.from_vkey(j["verifier_key"])
    assert provenance.open_checkpoint(j["note"], [v]).size == 5


def test_export_openlineage_and_prov(seeded: dict) -> None:
    env = {"ZTCP_TOKEN": seeded["auditor"]}
    r = run("audit", "export", "--format", "openlineage", "--citizen-ref", seeded["ref"], env=env)
    assert r.exit_code == 0, r.output
    runs = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(e["eventType"] == "COMPLETE" and e["run"]["runId"] and e["job"]["name"] for e in runs)
    disc = next(e for e in runs if e["run"]["facets"]["ztcp_provenance"]["type"] == "pii.disclose")
    assert disc["outputs"] == [{"namespace": "ztcp://recipients/agency", "name": "MOL"}]
    assert len(disc["run"]["facets"]["ztcp_provenance"]["derived_from"]) == 2
    r = run("audit", "export", "--format", "prov-json", "--citizen-ref", seeded["ref"], env=env)
    prov = json.loads(r.stdout)
    assert {"entity", "activity", "agent", "used", "wasInformedBy", "wasGeneratedBy"} <= set(prov)
    informed = {(v["prov:informed"], v["prov:informant"]) for v in prov["wasInformedBy"].values()}
    d = seeded["disclose"].event_id
    assert (f"ztcp:event/{d}", f"ztcp:event/{seeded['reads'][0].event_id}") in informed
    assert run("audit", "export", "--format", "rdf", "--citizen-ref", seeded["ref"], env=env).exit_code != 0


def test_export_jsonl_is_the_ledgers_entries_and_is_recorded_first(seeded: dict, tmp_path: Path) -> None:
    env = {"ZTCP_TOKEN": seeded["auditor"]}
    out = tmp_path / "ledger.jsonl"
    r = run("audit", "export", "--format", "jsonl", "-o", str(out), env=env)
    assert r.exit_code == 0, r.output
    assert (out.stat().st_mode & 0o777) == 0o600  # who read whose data: private to the auditor
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["seq"] for d in lines] == list(range(6))  # every entry, both citizens, in ledger order
    with ledger_from_settings(load_settings()) as led:
        live, _ = led.events_after(None)
        stored = [led.get(seq) for seq in range(6)]
    assert lines == live  # exactly what the SIEM's live feed reads
    for doc, entry in zip(lines, stored, strict=True):
        assert doc["leaf_hash"] == entry.leaf_hash.hex()
        body = {k: v for k, v in doc.items() if k not in ("seq", "leaf_hash")}
        assert contracts.ProvenanceEvent.model_validate_json(json.dumps(body)).canonical_bytes() == entry.body
    last = lines[-1]  # the export itself, recorded before anything was written
    assert last["type"] == "audit.export" and last["actor"]["id"] == "auditor-7"
    assert "citizen_ref" not in last and "jsonl all citizens" in last["query"]
    assert VALID_IDS[0] not in out.read_text()


def test_export_jsonl_of_one_citizen_and_window_and_refusals(seeded: dict) -> None:
    env = {"ZTCP_TOKEN": seeded["auditor"]}
    r = run("audit", "export", "--format", "jsonl", "--national-id", VALID_IDS[0], env=env)
    assert r.exit_code == 0, r.output
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert {d["citizen_ref"] for d in docs} == {seeded["ref"]}
    assert [d["type"] for d in docs] == ["pii.read"] * 3 + ["pii.disclose", "audit.export"]
    r = run("audit", "export", "--format", "jsonl", "--until", "2000-01-01", env=env)
    assert r.exit_code == 0 and r.stdout == ""  # a window before anything happened
    for token in (None, seeded["clerk"]):
        with ledger_from_settings(load_settings()) as led:
            before = led.size
        r = run("audit", "export", "--format", "jsonl", env={"ZTCP_TOKEN": token} if token else {})
        assert r.exit_code == 2 and r.stdout == ""
        with ledger_from_settings(load_settings()) as led:
            assert led.size == before  # refused: nothing exported, nothing to record


def test_verify_against_published_checkpoint_catches_full_rewrite(
    seeded: dict, ztcp_home: Path, tmp_path: Path
) -> None:
    """Someone with the signing key rewrites the whole file consistently: only a published note shows it."""
    note = tmp_path / "published.note"
    note.write_text(run("audit", "checkpoint").stdout)
    assert run("audit", "verify", "--published", str(note)).exit_code == 0
    settings = load_settings()
    keys = system_keys(settings)
    (ztcp_home / "provenance.db").unlink()
    for suffix in ("-wal", "-shm"):
        (ztcp_home / f"provenance.db{suffix}").unlink(missing_ok=True)
    with ledger_from_settings(settings, keys) as led:  # a fresh, self-consistent, validly signed history
        led.append([make_event(i + 100, citizen_ref=seeded["ref"]) for i in range(6)])
        led.checkpoint()
    assert run("audit", "verify").exit_code == 0  # locally consistent…
    r = run("audit", "verify", "--published", str(note))
    assert r.exit_code == 3 and "rewritten" in r.output  # …but not the history that was published
