"""Python analytics: detections plain Sigma cannot express, producing the same alerts.

Kept deliberately few (three); each is documented in siem_rules/README.md and has fixtures like a rule.

* ``first_seen_key_principal`` — a principal decrypting with a key it has never used before.
  Needs memory of every (key, principal) pair ever seen, which a Sigma rule over a time window
  cannot hold. The pairs live in a small state table, updated incrementally, so the cost of a run
  does not depend on history. Each key has a learning period (``first_seen_learning_hours`` from
  its first event) during which pairs are learned silently, so a new deployment does not flood.
* ``behaviour_baseline`` and ``claims_fraud_indicators`` — early warning beyond fixed thresholds
  (``baselines.py``): what is unusual *for this employee and their peers*, and the claims-fraud
  indicators of the bureau's early-warning programme. Each alert explains itself in words.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .alerts import Hit
from .config import SiemConfig
from .rulepack import AlertingRule
from .store import TABLE


class FirstSeenKeyPrincipal:
    id = "7d1f4c2e-9a51-4c0b-8d7e-3f0c2a6b9e11"
    name = "first_seen_key_principal"
    kind = "key"
    types = ("key.decrypt", "key.bulk_decrypt", "key.reencrypt")

    def rule(self) -> AlertingRule:
        return AlertingRule(
            id=self.id,
            name=self.name,
            title="First-seen principal decrypting with a key",
            description="A principal decrypts with a field-encryption key it has never used before "
            "(after the key's learning period): stolen service credentials or a new "
            "unsanctioned integration.",
            level="high",
            tags=["attack.credential_access", "attack.collection"],
            falsepositives=["A newly deployed service or a new key custodian"],
            file=Path(__file__),
            logsource=["keymgmt"],
            analytic=self.name,
            suppress_by=["key_name", "actor"],
        )

    def init(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS siem_first_seen (analytic TEXT NOT NULL, k TEXT NOT NULL, "
            "first_ts REAL NOT NULL, PRIMARY KEY (analytic, k)) WITHOUT ROWID"
        )

    def evaluate(self, conn: sqlite3.Connection, lo_rid: int, hi_rid: int, config: SiemConfig) -> list[Hit]:
        self.init(conn)
        learning = config.first_seen_learning_hours * 3600
        marks = ",".join("?" * len(self.types))
        rows = conn.execute(
            f"SELECT ts, event_id, key_name, actor FROM {TABLE[self.kind]} NOT INDEXED WHERE rid > ? AND rid <= ? "  # noqa: S608
            f"AND type IN ({marks}) ORDER BY ts, rid",
            (lo_rid, hi_rid, *self.types),
        ).fetchall()
        hits = []
        for ts, event_id, key_name, actor in rows:
            if key_name is None or actor is None:
                continue
            kk, pk = f"key:{key_name.lower()}", f"pair:{key_name.lower()}|{actor.lower()}"
            conn.execute("INSERT OR IGNORE INTO siem_first_seen VALUES (?, ?, ?)", (self.name, kk, ts))
            key_first = conn.execute(
                "SELECT first_ts FROM siem_first_seen WHERE analytic=? AND k=?", (self.name, kk)
            ).fetchone()[0]
            cur = conn.execute("INSERT OR IGNORE INTO siem_first_seen VALUES (?, ?, ?)", (self.name, pk, ts))
            if cur.rowcount and ts > key_first + learning:
                hits.append(
                    Hit(
                        group={"key_name": key_name, "actor": actor},
                        window_start=ts,
                        window_end=ts,
                        evidence=[(ts, event_id)],
                        metric=1.0,
                    )
                )
        return hits


def _early_warning() -> list:
    from .baselines import BehaviourBaseline, ClaimsFraudIndicators

    return [BehaviourBaseline(), ClaimsFraudIndicators()]


ANALYTICS = [FirstSeenKeyPrincipal(), *_early_warning()]
