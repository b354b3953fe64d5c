"""keymgmt benchmark: field encryption against its anchors, in one run.

- raw AES-256-GCM loop (cryptography, pre-generated nonces, same value sizes and AAD length): anchor;
- envelope encrypt / decrypt (ze1 format, DEK from the local keyring, AAD = dataset|column|pk);
- transit encrypt per call and batched (an OpenBao dev server started here): the anchor the envelope
  design avoids on the hot path;
- decrypt-with-decision of a 10-field record: decision-token verification + provenance append (real
  ledger, durable) + decrypt + masking; p50/p99;
- encrypt-table in place: 1 M rows × 3 columns on SQLite (100 k when quick), with a blind index.

Targets (docs/design.md, Performance targets): envelope ≥ 500,000 fields/s per core; decrypt-with-decision p50 ≤ 1 ms;
1 M rows ≤ 60 s (the bureau's reconciliation target is 23 M records / 8 h ≈ 800 rows/s).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import contracts
import keymgmt
import pdp
import provenance
from benchmarks.common import percentiles, postgres_cluster, result, write
from contracts.provenance_event import Actor

ROOT = Path(__file__).resolve().parents[1]
BAO = ROOT / ".venv" / "bin" / "bao"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _openbao(workdir: Path) -> Iterator[tuple[str, str] | None]:
    """A throwaway OpenBao dev server (root token via env, not argv)."""
    if not BAO.exists():
        yield None
        return
    port, token = _free_port(), "bench-" + secrets.token_hex(8)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "BAO_DEV_ROOT_TOKEN_ID": token,
           "BAO_DEV_LISTEN_ADDRESS": f"127.0.0.1:{port}"}
    log = open(workdir / "bao.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(BAO), "server", "-dev"], stdout=log, stderr=subprocess.STDOUT, env=env)
    addr = f"http://127.0.0.1:{port}"
    try:
        import hvac

        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(Exception):
                c = hvac.Client(url=addr, token=token)
                if c.sys.is_initialized() and not c.sys.is_sealed():
                    c.sys.enable_secrets_engine("transit", path="transit")
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("OpenBao dev server did not start")
            time.sleep(0.1)
        yield addr, token
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _values(n: int) -> list[tuple[int, str]]:
    return [(i, f"A1{i % 100_000_000:08d}") for i in range(n)]


def bench_raw_and_envelope(work: Path, n: int) -> tuple[list[dict], keymgmt.LocalKeyring]:
    ring = keymgmt.LocalKeyring.open(work / "keyring.sealed", os.urandom(32))
    ring.ensure(keymgmt.DEFAULT_KEK, "aes256-gcm96")
    ring.ensure(keymgmt.DEFAULT_BLIND_INDEX_KEY, "hmac")
    engine = keymgmt.make_engine(f"sqlite:///{work / 'env.db'}")
    env = keymgmt.Envelope(ring, engine)
    items = _values(n)
    env.encrypt_many("insured_persons", "national_id", items[:1000])

    aead = AESGCM(os.urandom(32))
    prefix = keymgmt.ciphertext.aad_prefix("insured_persons", "national_id")
    aad = b"\x01" + b"\x00" * 8 + prefix + b"\0\0\0\x06123456"  # same AAD length as the envelope's
    plains = [v.encode() for _, v in items]
    best_raw = best_enc = best_dec = 0.0
    for _ in range(3):  # best of three: the machine is shared
        nonces = os.urandom(12 * n)
        t = time.perf_counter()
        enc = aead.encrypt
        for i in range(n):
            enc(nonces[12 * i:12 * i + 12], plains[i], aad)
        best_raw = max(best_raw, n / (time.perf_counter() - t))
        t = time.perf_counter()
        cts = env.encrypt_many("insured_persons", "national_id", items)
        best_enc = max(best_enc, n / (time.perf_counter() - t))
        t = time.perf_counter()
        dec = env.decrypt
        for (pk, _), ct in zip(items, cts, strict=True):
            dec("insured_persons", "national_id", pk, ct)
        best_dec = max(best_dec, n / (time.perf_counter() - t))
    rows = [
        result("raw AES-256-GCM loop (anchor)", best_raw, "fields/s"),
        result("envelope encrypt", best_enc, "fields/s", target="≥ 500,000 fields/s per core",
               ok=best_enc >= 500_000, anchor=f"raw AES-GCM {best_raw:,.0f}/s ({best_enc / best_raw:.0%})"),
        result("envelope decrypt", best_dec, "fields/s", anchor=f"raw AES-GCM {best_raw:,.0f}/s"),
    ]
    return rows, ring


def bench_transit(work: Path, quick: bool) -> list[dict]:
    with _openbao(work) as srv:
        if srv is None:
            return [result("transit encrypt per call", 0, "ops/s", note="skipped: no bao binary")]
        addr, token = srv
        p = keymgmt.VaultProvider(addr, token=token)
        p.create("kek", "aes256-gcm96")
        dek = os.urandom(32)
        n_call = 150 if quick else 600
        for _ in range(20):
            p.wrap("kek", dek)
        t = time.perf_counter()
        for _ in range(n_call):
            p.wrap("kek", dek)
        per_call = n_call / (time.perf_counter() - t)
        items = [os.urandom(32) for _ in range(2000 if quick else 8000)]
        t = time.perf_counter()
        p.wrap_many("kek", items)
        batched = len(items) / (time.perf_counter() - t)
        _, w = p.generate_datakey("kek")
        t = time.perf_counter()
        for _ in range(n_call // 3):
            p.unwrap("kek", w)
        unwrap = (n_call // 3) / (time.perf_counter() - t)
    return [
        result("transit encrypt per call (anchor)", per_call, "ops/s", anchor="expected ≈800/s"),
        result("transit encrypt batched", batched, "items/s", anchor=f"per call {per_call:,.0f}/s",
               batch_items=p.batch_items),
        result("transit unwrap per call (DEK cache miss)", unwrap, "ops/s"),
    ]


def bench_decrypt_with_decision(work: Path, ring: keymgmt.LocalKeyring, quick: bool) -> list[dict]:
    engine = keymgmt.make_engine(f"sqlite:///{work / 'gate.db'}")
    fields = [f"f{i}" for i in range(10)]
    md = sa.MetaData()
    cols = [sa.Column(f, sa.Text) for f in fields]
    sa.Table("citizens", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("cref", sa.String(60)), *cols)
    md.create_all(engine)
    spec = keymgmt.TableSpec(table="citizens", pk="id", columns=tuple(fields), citizen_ref_column="cref",
                             dataset="insured_persons")
    env = keymgmt.Envelope(ring, engine)
    et = keymgmt.EncryptedTable(engine, spec, env)
    et.prepare()
    import base64

    crefs = {}
    for i in range(1, 201):
        crefs[i] = "cr_" + base64.b32encode(os.urandom(32)).decode().rstrip("=")
        et.insert({"id": i, "cref": crefs[i], **{f: f"value-{f}-{i:06d}" for f in fields}})
    signer = pdp.DecisionTokenSigner(Ed25519PrivateKey.generate(), "https://ztcp.local/pdp", ttl_seconds=600)
    verifier = signer.verifier()
    ledger = provenance.Ledger(work / "ledger.db", Ed25519PrivateKey.generate(), "bench.ztcp/keymgmt")
    rec = provenance.Recorder(ledger)
    reader = keymgmt.ProtectedReader(et, verifier, rec)
    n = 300 if quick else 2000

    def token(i: int) -> str:
        return signer.sign({"jti": str(uuid.uuid4()), "sub": "staff-1", "effect": "permit", "action": "read",
                            "citizen_ref": crefs[i], "dataset": "insured_persons", "record_id": str(i),
                            "fields": fields, "purpose": "benefit_review",
                            "obligations": [{"type": "mask", "field": "f1", "style": "last4"}]})[0]

    tokens = [token(1 + k % 200) for k in range(n)]
    # Steady state: a fresh SQLite WAL file grows on the first commits, and growing it makes each
    # fsync cost several ms; a ledger in service has long reached its WAL size.
    for k in range(1500):
        rec.record(contracts.ProvenanceEvent(type="pii.read", actor=Actor(id="warmup"), citizen_ref=crefs[1],
                                              dataset="insured_persons", record_id=f"w{k}", fields=["f0"]))
    for k in range(20):
        reader.read(tokens[k], 1 + k % 200, fields)
    # Interleaved, so the read and its anchors see the same disk (fsync latency varies a lot on a
    # shared machine): each round times one decrypt-with-decision, one bare token verification and
    # one bare durable ledger append.
    lat, verify_lat, append_lat = [], [], []
    for k in range(n):
        s = time.perf_counter()
        reader.read(tokens[k], 1 + k % 200, fields)
        lat.append(time.perf_counter() - s)
        s = time.perf_counter()
        pdp.verify_decision_token(tokens[k], verifier)
        verify_lat.append(time.perf_counter() - s)
        ev = contracts.ProvenanceEvent(type="pii.read", actor=Actor(id="staff-1"), citizen_ref=crefs[1 + k % 200],
                                        dataset="insured_persons", record_id=str(k), fields=fields)
        s = time.perf_counter()
        rec.record(ev)
        append_lat.append(time.perf_counter() - s)
    rec.close()
    ledger.close()
    p = percentiles(lat)
    pv, pa = percentiles(verify_lat), percentiles(append_lat)
    own = percentiles([max(0.0, a - b) for a, b in zip(lat, append_lat, strict=True)])
    return [result("decrypt-with-decision, 10-field record, p50", p["p50_ms"], "ms",
                   target="p50 ≤ 1 ms", ok=p["p50_ms"] <= 1.0,
                   anchor=f"token verify p50 {pv['p50_ms']:.3f} ms + durable ledger append p50 "
                          f"{pa['p50_ms']:.3f} ms",
                   p90_ms=round(p["p90_ms"], 3), p99_ms=round(p["p99_ms"], 3), samples=n,
                   ledger_append_p50_ms=round(pa["p50_ms"], 3), token_verify_p50_ms=round(pv["p50_ms"], 3),
                   without_ledger_fsync_p50_ms=round(own["p50_ms"], 3))]


def _encrypt_table_once(url: str, ring: keymgmt.LocalKeyring, n: int) -> float:
    engine = keymgmt.make_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE people (id INTEGER PRIMARY KEY, national_id TEXT, phone TEXT, "
                          "bank_account TEXT, note TEXT)"))
        step = 50_000
        for start in range(0, n, step):
            c.execute(sa.text("INSERT INTO people VALUES (:id, :a, :b, :c, 'x')"),
                      [{"id": i, "a": f"A1{i:08d}", "b": f"09{i:08d}", "c": f"822-{i:012d}"}
                       for i in range(start, min(n, start + step))])
    env = keymgmt.Envelope(ring, engine)
    spec = keymgmt.TableSpec(table="people", pk="id", columns=("national_id", "phone", "bank_account"),
                             blind_index=("national_id",))
    et = keymgmt.EncryptedTable(engine, spec, env, keymgmt.BlindIndexKeys(ring))
    t = time.perf_counter()
    r = keymgmt.encrypt_table(et, batch=5000)
    dt = time.perf_counter() - t
    assert r.rows_changed == n
    engine.dispose()
    return dt


def bench_encrypt_table(work: Path, ring: keymgmt.LocalKeyring, quick: bool) -> list[dict]:
    n = 100_000 if quick else 1_000_000
    dt = _encrypt_table_once(f"sqlite:///{work / 'table.db'}", ring, n)
    projected = dt * 1_000_000 / n
    rows = [result(f"encrypt-table {n:,} rows × 3 columns (SQLite, blind index)", dt, "s",
                   target="1 M rows ≤ 60 s", ok=projected <= 60,
                   anchor="bureau target 23 M records / 8 h ≈ 800 rows/s",
                   rows_per_second=round(n / dt), projected_1m_rows_s=round(projected, 1))]
    n_pg = 50_000 if quick else 200_000
    with postgres_cluster() as url:
        if url is not None:
            dt = _encrypt_table_once(url, ring, n_pg)
            rows.append(result(f"encrypt-table {n_pg:,} rows × 3 columns (PostgreSQL 15, blind index)", dt, "s",
                               rows_per_second=round(n_pg / dt),
                               projected_1m_rows_s=round(dt * 1_000_000 / n_pg, 1)))
    return rows


def main(quick: bool = False) -> None:
    work = Path(tempfile.mkdtemp(prefix="ztcp-bench-keymgmt-"))
    try:
        rows, ring = bench_raw_and_envelope(work, 100_000 if quick else 300_000)
        rows += bench_transit(work, quick)
        rows += bench_decrypt_with_decision(work, ring, quick)
        rows += bench_encrypt_table(work, ring, quick)
        # The machine is shared: record how busy it was, since every figure here is CPU-bound.
        rows[0]["load_average_1m"] = round(os.getloadavg()[0], 2)
        path = write("keymgmt", rows, quick=quick)
        for r in rows:
            print(f"  {r['name']}: {r['value']:,} {r['unit']}  {r.get('anchor', '')}")
        print(f"  -> {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv)
