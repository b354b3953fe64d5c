"""exchange benchmark: `exchange send` of N citizens × 5 fields end to end on SQLite and on
PostgreSQL (the protected table and the ledger both in a throwaway local cluster), each against its
anchor in the same run.

Setup (not measured): a fresh home, the default pack with an agreements register (agency keys) in a
signed revision, an insured_persons table of N rows encrypted in place (5 protected columns, blind
index on national_id), an input file naming every citizen by national ID.

Measured:

- **end to end**: ``ExchangeService.send`` — the input checked and staged (citizen_ref and blind
  index per line), one PDP decision, rows found by blind index, one ``pii.disclose`` per citizen
  recorded durably (one fsync'd transaction per chunk), 5 fields decrypted, records sealed to the
  agency (HPKE + AES-256-GCM segments, fsync per segment), the record signed, the transfer event,
  a checkpoint and its proof;
- **anchor**: a raw read of the same rows (sqlite3, the 5 ciphertext columns) and AES-256-GCM
  decryption of every field with the already-unwrapped data key — what no batch can beat;
- **the per-citizen provenance choice**: ledger bytes per citizen and, for the alternative (one
  batch event whose per-citizen leaves are a Merkle tree kept beside it), the cost of hashing those
  leaves into a root — measured so the choice is visible (README, "Government data exchange").

Target (issue #14): ≥ 10,000 records/s on 2 cores, i.e. the bureau's 23 M records in under 40 min.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import contracts
import keymgmt
from benchmarks.common import postgres_cluster, result, write

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("name", "national_id", "address", "phone", "bank_account")


def _nid(i: int) -> str:
    from siem_rules.fixtures import synthetic_national_id

    return synthetic_national_id(i * 7 % 500_000_000)


def setup(home: Path, n: int, database_url: str | None = None) -> tuple:
    os.environ["ZTCP_HOME"] = str(home)
    os.environ["ZTCP_CONFIG"] = str(home / "none.toml")
    for k in [k for k in os.environ if k.startswith("ZTCP_") and k not in ("ZTCP_HOME", "ZTCP_CONFIG")]:
        del os.environ[k]
    import policy
    from exchange.crypto import public_jwk
    from server.runtime import Runtime
    from server.settings import load_settings

    overrides: dict = {"engine_timeout_ms": 2000}
    if database_url:  # the protected table and every shared store (ledger, decision log, ...) in PostgreSQL
        overrides |= {"database_url": database_url,
                      "protected_db": "postgresql+psycopg://" + database_url.removeprefix("postgresql://")}
    rt = Runtime(load_settings(**overrides))
    rt.keys.ensure_all()
    rt.device_inventory.register("ztcp-exchange-host", managed=True, compliant=True, actor="bench")
    sig, dec = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
    bureau = json.loads((ROOT / "policy/rego/bureau/data.json").read_text())
    bureau["datasets"]["insured_persons"]["fields"] = list(COLUMNS)
    agreement = {"id": "DSA-BENCH", "dataset": "insured_persons", "fields": list(COLUMNS), "legal_basis": "TCA-Art-30",
                 "expires": "2099-12-31T00:00:00Z", "status": "approved",
                 "receipt_key": public_jwk(sig.public_key()), "encryption_key": public_jwk(dec.public_key())}
    store = rt.revision_store
    base = store.active()
    pack = policy.with_registers(store.pack(base.revision) if base else policy.load_pack(),
                                 {"agreements": {"agency-tax": [agreement]}, "datasets": bureau["datasets"]})
    rev = store.propose(pack, author="bench-maker", message="bench")
    store.approve(rev.id, approver="bench-checker")
    store.publish(rev.id, actor="bench-checker", signer=rt.keys.bundle_signing)
    if "point" in rt.__dict__:
        rt.reloader.check()

    engine = rt.protected_engine
    md = sa.MetaData()
    table = sa.Table("insured_persons", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("citizen_ref", sa.String(64)), *(sa.Column(c, sa.Text) for c in COLUMNS))
    md.create_all(engine)
    key = rt.keys.blind_index
    step = 50_000
    with engine.begin() as c:
        for lo in range(0, n, step):
            rows = []
            for i in range(lo, min(n, lo + step)):
                nid = _nid(i)
                rows.append({"id": i + 1, "citizen_ref": contracts.citizen_ref(nid, key), "name": f"姓名{i:07d}",
                             "national_id": nid, "address": f"臺北市中正區忠孝東路一段{i % 999 + 1}號{i % 20}樓",
                             "phone": f"09{i % 10**8:08d}", "bank_account": f"8120000{i:09d}"})
            c.execute(table.insert(), rows)
    spec = keymgmt.TableSpec(table="insured_persons", pk="id", columns=COLUMNS, blind_index=("national_id",),
                             citizen_ref_column="citizen_ref")
    et = keymgmt.EncryptedTable(engine, spec, keymgmt.Envelope(rt.key_provider, engine),
                                keymgmt.BlindIndexKeys(rt.key_provider))
    keymgmt.encrypt_table(et, batch=5000)
    inp = home.parent / "everyone.csv"
    with open(inp, "w") as f:
        f.write("national_id\n")
        for i in range(n):
            f.write(_nid(i) + "\n")
    assert rt.issuer is not None  # the bench home signs in with the development issuer
    tok = rt.issuer.issue_subject("emp-xo-bench", ["exchange_officer"], method="fido2", mfa=True, org_unit="x")
    return rt, inp, tok


def anchor_raw_decrypt(rt, n: int) -> float:  # noqa: ANN001
    """Raw read + AES-256-GCM of the same 5 × N fields: the floor under any batch."""
    url = rt.settings.protected_db_url
    env = keymgmt.Envelope(rt.key_provider, rt.protected_engine)
    prefixes = [keymgmt.ciphertext.aad_prefix("insured_persons", c) for c in COLUMNS]
    query = f"SELECT id, ztcp_dek, {', '.join(COLUMNS)} FROM insured_persons"  # noqa: S608
    start = time.perf_counter()
    if url.startswith("sqlite"):
        db: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        rows: Any = db.execute(query)
    else:  # a server-side cursor: rows stream as they would to a batch
        import psycopg

        db = psycopg.connect("postgresql://" + url.split("://", 1)[1])
        rows = db.cursor(name="anchor")
        rows.itersize = 5000
        rows.execute(query)
    aeads: dict[str, AESGCM] = {}  # by DEK id (the VARCHAR state column)
    count = 0
    for row in rows:
        pk, dek = row[0], str(row[1])
        aead = aeads.get(dek)
        if aead is None:
            env.prefetch([dek])
            aead = aeads[dek] = env._cache[dek][0]
        pkb = str(pk).encode()
        tail = len(pkb).to_bytes(4, "big") + pkb
        for j, text in enumerate(row[2:]):
            raw = binascii.a2b_base64(text[4:])
            aead.decrypt(raw[9:21], raw[21:], raw[:9] + prefixes[j] + tail)
        count += 1
    db.close()
    dt = time.perf_counter() - start
    assert count == n
    return dt


def _one(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    assert row is not None  # an aggregate: always one row
    return row


def _ledger_bytes(rt) -> int:  # noqa: ANN001
    """The ledger's size: logical pages of the SQLite file, or its PostgreSQL schema's relations."""
    if not rt.settings.database_url:
        return _db_bytes(rt.ledger.path)
    import psycopg

    with psycopg.connect(rt.settings.database_url) as db:
        (size,) = _one(db.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                             "JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = 'ztcp_ledger' AND c.relkind = 'r'").fetchone())
    return int(size)


def _db_bytes(path: Path) -> int:
    """The ledger's logical size (pages in use, WAL included): what the events really take, not how
    far the WAL file happens to have grown before its next checkpoint."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (n,) = db.execute("SELECT page_count * page_size - freelist_count * page_size FROM pragma_page_count(), "
                          "pragma_page_size(), pragma_freelist_count()").fetchone()
    finally:
        db.close()
    return int(n)


def merkle_alternative(n: int) -> float:
    """The alternative to per-citizen ledger events: per-citizen leaves hashed into one batch root."""
    import hashlib

    from provenance import merkle

    start = time.perf_counter()
    cr = merkle.CompactRange()
    sha = hashlib.sha256
    for i in range(n):
        cr.append(sha(b"\x00" + b"xfer_bench:" + str(i).encode() + b":cr_" + b"A" * 52).digest())
    cr.root()
    return time.perf_counter() - start


def run(work: Path, n: int, database_url: str | None) -> dict:
    """One end-to-end send of ``n`` citizens and its anchor, on SQLite or (``database_url``) PostgreSQL."""
    t0 = time.perf_counter()
    rt, inp, tok = setup(work / "home", n, database_url)
    setup_s = time.perf_counter() - t0
    from server.exchange import cli_operator

    op = cli_operator(rt, rt.verifier.verify_subject(tok), tok)
    ledger_before = _ledger_bytes(rt)
    start = time.perf_counter()
    summary = rt.exchange.send(op, "DSA-BENCH", inp, work / "out")
    e2e = time.perf_counter() - start
    assert summary["citizens"] == n, summary
    ledger_bytes = _ledger_bytes(rt) - ledger_before
    anchor = anchor_raw_decrypt(rt, n)
    rt.close()
    return {"e2e": e2e, "anchor": anchor, "ledger_bytes": ledger_bytes, "setup": setup_s,
            "payload_bytes": summary["payload_bytes"], "load": os.getloadavg()[0]}


def main(quick: bool = False, n: int | None = None) -> None:
    n = n or (100_000 if quick else 1_000_000)
    rows = []
    for kind in ("SQLite", "PostgreSQL"):
        work = Path(tempfile.mkdtemp(prefix="ztcp-bench-exchange-"))
        try:
            with contextlib.ExitStack() as stack:
                url = stack.enter_context(postgres_cluster()) if kind == "PostgreSQL" else None
                if kind == "PostgreSQL" and url is None:
                    print("  PostgreSQL is not installed: its row is skipped")
                    continue
                m = run(work, n, url)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rate, anchor_rate = n / m["e2e"], n / m["anchor"]
        projected = 23_000_000 / rate / 60
        where = "SQLite" if kind == "SQLite" else "PostgreSQL: protected table and ledger"
        rows += [
            result(f"exchange send, {n:,} citizens × 5 fields end to end ({where}: stage, decide, blind index, "
                   "per-citizen pii.disclose, decrypt, HPKE+AES-GCM seal, sign)", rate, "records/s",
                   target="≥ 10,000 records/s (23 M in < 40 min)", ok=rate >= 10_000,
                   anchor=f"raw read + AES-GCM decrypt of the same rows: {anchor_rate:,.0f} records/s "
                          f"({rate / anchor_rate:.0%}); 23 M projected {projected:.0f} min vs the plan's 8 h",
                   seconds=round(m["e2e"], 2), projected_23m_minutes=round(projected, 1),
                   payload_bytes=m["payload_bytes"], setup_seconds=round(m["setup"], 1),
                   load_average_1m=round(m["load"], 2)),
            result(f"raw read + AES-256-GCM decrypt, 5 fields ({kind}; anchor)", anchor_rate, "records/s",
                   anchor="the anchor", seconds=round(m["anchor"], 2)),
            result(f"per-citizen provenance: ledger growth per citizen ({kind})", m["ledger_bytes"] / n, "bytes",
                   anchor=f"23 M citizens ≈ {m['ledger_bytes'] / n * 23e6 / 2**30:.1f} GiB of ledger per full "
                          "exchange" + (", tables with their indexes" if url else "")),
        ]
        print(f"  {kind}: {rate:,.0f} records/s vs anchor {anchor_rate:,.0f}", flush=True)
    alt = merkle_alternative(n)
    rows.append(result("batch-leaf alternative: per-citizen leaves hashed into one batch root", n / alt, "leaves/s",
                       anchor="≈ 60 bytes of ledger per citizen, but needs its own citizen index to be traced"))
    path = write("exchange", rows, quick=quick)
    for r in rows:
        print(f"  {r['name']}: {r['value']:,} {r['unit']}  {r.get('anchor', '')}")
    print(f"  -> {path}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(quick="--quick" in sys.argv, n=int(args[0]) if args else None)

