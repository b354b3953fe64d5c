"""Log management benchmark: every figure against its anchor in the same run.

- decision-log append with the hash chain (SQLite, batches of 256 as the writer thread commits them):
  anchor the same entries written by the bare version-1 insert (no chain) to a fresh file;
- ledger archive (``ztcp logs archive``: read, pack, zlib, AES-256-GCM, fsync'd segments) of 500 k
  events (100 k when quick): anchor zlib (same level) + SHA-256 of the same record bytes;
- archive verification (``ztcp logs verify``: decrypt, decompress, recompute every leaf and the
  Merkle root, check the checkpoints, compare with the live ledger): anchor zlib decompression +
  SHA-256 of the same bytes.

The baseline-scoring and rsyslog-forwarding figures are in bench_siem (same 1 M events as the rule pack).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

from benchmarks.common import result, write

_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[logs {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def _entries(n: int) -> list[dict]:
    from siem_rules.fixtures import DEFAULTS

    base = DEFAULTS["decision"]
    out = []
    for i in range(n):
        e = dict(base)
        e["decision_id"] = f"0193a1b2-c3d4-7e5f-8a9b-{i:012d}"
        e["timestamp"] = "2026-03-02T01:00:00Z"
        e["ts"] = 1772413200.0 + i * 0.01
        out.append(e)
    return out


def chain_append(tmp: Path, n: int) -> list[dict]:
    from pdp.sqlite_stores import DECISION_MIGRATIONS, SqliteDecisionStore, _rw
    from pdp.storage import decision_row

    entries = _entries(n)
    batch = 256
    store = SqliteDecisionStore(tmp / "chained.db")
    t = time.perf_counter()
    for i in range(0, n, batch):
        store.write(entries[i:i + batch])
    chained = n / (time.perf_counter() - t)
    store.close()
    conn = _rw(tmp / "bare.db", 5.0)
    for statement in DECISION_MIGRATIONS[0].statements:
        conn.execute(statement)
    t = time.perf_counter()
    for i in range(0, n, batch):
        rows = [decision_row(e) for e in entries[i:i + batch]]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR IGNORE INTO decisions (decision_id, timestamp, ts, subject_id, citizen_ref, "
                         "effect, revision, entry) VALUES (?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
    bare = n / (time.perf_counter() - t)
    conn.close()
    return [result(f"decision-log append with hash chain, {n:,} entries in batches of 256 (SQLite)", chained,
                   "entries/s", anchor=f"bare insert of the same entries (no chain): {bare:,.0f} entries/s "
                                       f"(chain costs {100 * (1 - chained / bare):.0f} %)")]


def archive_and_verify(tmp: Path, n: int) -> list[dict]:
    from benchmarks.bench_provenance import Population, populate
    from provenance.archive import pack_records, segments
    from server.archives import archive_dir, archive_ledger, verify_archive
    from server.bootstrap import system_keys
    from server.ledger import ledger_from_settings
    from server.settings import load_settings

    home = tmp / "home"
    os.environ["ZTCP_HOME"] = str(home)
    os.environ["ZTCP_CONFIG"] = str(tmp / "none.toml")
    settings = load_settings()
    system_keys(settings).ensure_all()
    log(f"filling a ledger with {n:,} events")
    with ledger_from_settings(settings) as ledger:
        populate(ledger, Population(n), n)
        ledger.checkpoint()
        rows = [(e.seq, e.event_id, e.body) for e in ledger.entries(0, n)]
    raw = pack_records(rows)
    mb = len(raw) / 1e6
    del rows
    log("archive")
    t = time.perf_counter()
    run = archive_ledger(settings)
    archive_s = time.perf_counter() - t
    assert run.events == n, run
    t = time.perf_counter()
    packed = zlib.compress(raw, 6)
    hashlib.sha256(raw).digest()
    anchor_c = time.perf_counter() - t
    log("verify")
    t = time.perf_counter()
    report = verify_archive(settings)
    verify_s = time.perf_counter() - t
    assert report.events == n and report.live_checked
    t = time.perf_counter()
    hashlib.sha256(zlib.decompress(packed)).digest()
    anchor_d = time.perf_counter() - t
    size = sum(p.stat().st_size for p in segments(archive_dir(settings)))
    return [
        result(f"ledger archive of {n:,} events ({mb:.0f} MB of records → {size / 1e6:.0f} MB sealed)", n / archive_s,
               "events/s", anchor=f"zlib level 6 + SHA-256 of the same bytes: {n / anchor_c:,.0f} events/s "
                                  f"({mb / anchor_c:.0f} MB/s; archive {mb / archive_s:.0f} MB/s)"),
        result(f"archive verification of {n:,} events (decrypt, leaves, Merkle root, checkpoints, live ledger)",
               n / verify_s, "events/s",
               anchor=f"zlib decompression + SHA-256 of the same bytes: {n / anchor_d:,.0f} events/s "
                      f"({mb / anchor_d:.0f} MB/s; verify {mb / verify_s:.0f} MB/s)"),
    ]


def main(quick: bool = False) -> Path:
    n_chain = 50_000 if quick else 200_000
    n_ledger = 100_000 if quick else 500_000
    saved = {k: os.environ.get(k) for k in ("ZTCP_HOME", "ZTCP_CONFIG")}
    try:
        with tempfile.TemporaryDirectory(prefix="ztcp-bench-logs-") as d:
            tmp = Path(d)
            log("decision-log chain")
            rows = chain_append(tmp, n_chain)
            rows += archive_and_verify(tmp, n_ledger)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    for r in rows:
        log(f"{r['name']}: {r['value']:,} {r['unit']} — {r['anchor']}")
    return write("logs", rows, quick=quick)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
