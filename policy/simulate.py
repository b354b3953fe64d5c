"""What-if: replay logged decision inputs against a candidate pack and report what would change.

Each decision-log entry carries the full policy input *as it was at decision time*, signals
included (the PDP computes signals before evaluation and logs them), so replaying an entry
against the candidate answers exactly "what would this request have got under the candidate".
The report is deterministic: entries are processed in (timestamp, decision_id) order, samples are
the first ids in that order, and every list is sorted, so the same log and candidate always give
the same report (CI can diff it).

Evaluation is injected (``evaluate(pack, input_doc) -> decision dict``) so this module does not
depend on ``pdp``; the CLI passes the PDP's own engine so replay matches production exactly.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from policy.errors import SimulationError
from policy.pack import PolicyPack

Evaluate = Callable[[PolicyPack, dict[str, Any]], Mapping[str, Any]]
EFFECTS = ("permit", "step_up", "deny")
# Decisions the PDP refused before or instead of evaluating the policy (fail closed). They say
# nothing about the policy, so they are counted apart, not compared.
FAIL_CLOSED_REASONS = frozenset({"engine_timeout", "engine_error", "no_policy", "decision_log_unavailable",
                                 "signal_history_unavailable"})


def is_fail_closed(result: Mapping[str, Any]) -> bool:
    reasons = [str(r) for r in result.get("reasons") or []]
    if reasons and all(r in FAIL_CLOSED_REASONS or r.startswith("subject_token_") for r in reasons):
        return True
    risk = result.get("risk") or {}
    factors = risk.get("factors") if isinstance(risk, Mapping) else None
    return any(isinstance(f, Mapping) and f.get("detail") == "fail closed" for f in factors or [])


LEVELS = ("low", "medium", "high", "critical")


class Move(BaseModel):
    """Decisions that moved from one value to another (effect or risk level)."""

    model_config = ConfigDict(frozen=True)

    before: str = Field(serialization_alias="from")
    after: str = Field(serialization_alias="to")
    count: int
    samples: list[str]


class ReasonChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str
    added: int  # decisions where the candidate gives this reason and the logged one did not
    removed: int  # decisions where the logged decision had it and the candidate does not


class SimulationReport(BaseModel):
    """The what-if report. ``changed`` counts decisions whose outcome differs in any enforced way."""

    candidate: dict[str, str | None]
    baseline_revisions: dict[str, int]
    window: dict[str, str | None]
    total: int
    replayed: int
    skipped: int
    fail_closed: int  # logged refusals that never reached the policy (engine timeout, bad token, …)
    errors: int
    error_samples: list[str]
    unchanged: int
    changed: int
    effect_changed: int
    fields_changed: int
    obligations_changed: int
    effects_before: dict[str, int]
    effects_after: dict[str, int]
    transitions: list[Move]
    risk_level_moves: list[Move]
    risk_score: dict[str, float]
    reasons: list[ReasonChange]
    changed_samples: list[str]

    @property
    def has_changes(self) -> bool:
        return self.changed > 0 or self.errors > 0 or bool(self.risk_level_moves)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def replay_input(logged: Mapping[str, Any]) -> dict[str, Any]:
    """The policy input to replay from a logged (minimised) input.

    The PDP logs whether a break-glass justification was given and its length, never its text
    (free text may hold personal data); a same-length placeholder restores what policies may test.
    """
    doc = {k: v for k, v in logged.items()}
    purpose = dict(doc.get("purpose") or {})
    if "justification_present" in purpose or "justification_length" in purpose:
        present = bool(purpose.pop("justification_present", False))
        length = int(purpose.pop("justification_length", 0) or 0)
        purpose["justification"] = ("x" * max(length, 1)) if present else None
        doc["purpose"] = purpose
    return doc


def _reasons(result: Mapping[str, Any]) -> set[str]:
    return {str(r) for r in result.get("reasons") or []}


def _level(result: Mapping[str, Any]) -> str | None:
    risk = result.get("risk") or {}
    level = risk.get("level") if isinstance(risk, Mapping) else None
    return str(level) if level is not None else None


def _score(result: Mapping[str, Any]) -> float | None:
    risk = result.get("risk") or {}
    score = risk.get("score") if isinstance(risk, Mapping) else None
    return float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None


def _fields(result: Mapping[str, Any]) -> list[str]:
    return sorted(str(f) for f in result.get("permitted_fields") or [])


def _obligations(result: Mapping[str, Any]) -> list[str]:
    return sorted(json.dumps(o, sort_keys=True) for o in result.get("obligations") or [])


def _sort_key(entry: Mapping[str, Any]) -> tuple[str, str]:
    return (str(entry.get("timestamp") or ""), str(entry.get("decision_id") or ""))


def _baseline_revision(entry: Mapping[str, Any]) -> str:
    bundles = entry.get("bundles") or {}
    if isinstance(bundles, Mapping):
        if isinstance(revision := bundles.get("revision"), str):
            return revision
        for value in bundles.values():  # OPA style: {"<bundle name>": {"revision": …}}
            if isinstance(value, Mapping) and value.get("revision"):
                return str(value["revision"])
    return "unknown"


def _moves(groups: Mapping[tuple[str, str], list[str]], samples: int) -> list[Move]:
    moves = [Move(before=a, after=b, count=len(ids), samples=ids[:samples]) for (a, b), ids in groups.items()]
    return sorted(moves, key=lambda m: (-m.count, m.before, m.after))


def simulate(
    pack: PolicyPack,
    entries: Iterable[Mapping[str, Any]],
    evaluate: Evaluate,
    *,
    samples: int = 5,
    top: int = 10,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationReport:
    """Replay ``entries`` (decision-log dicts) against ``pack`` and summarise the differences.

    ``progress(done, total)`` is called every 100 entries and at the end (for a progress bar).
    """
    if evaluate is None:
        raise SimulationError("no evaluator: simulation needs the decision engine")
    ordered = sorted(entries, key=_sort_key)
    total = len(ordered)
    skipped = fail_closed = errors = unchanged = changed = effect_changed = fields_changed = obligations_changed = 0
    error_ids: list[str] = []
    changed_ids: list[str] = []
    before_counts: Counter[str] = Counter()
    after_counts: Counter[str] = Counter()
    transitions: dict[tuple[str, str], list[str]] = defaultdict(list)
    level_moves: dict[tuple[str, str], list[str]] = defaultdict(list)
    added: Counter[str] = Counter()
    removed: Counter[str] = Counter()
    baselines: Counter[str] = Counter()
    deltas: list[float] = []
    first = last = None

    for done, entry in enumerate(ordered, start=1):
        if progress is not None and done % 100 == 0:
            progress(done, total)
        decision_id = str(entry.get("decision_id") or "")
        logged_input = entry.get("input")
        before = entry.get("result")
        if not isinstance(logged_input, Mapping) or not isinstance(before, Mapping) or "effect" not in before:
            skipped += 1
            continue
        if is_fail_closed(before):
            fail_closed += 1
            continue
        first = first or entry.get("timestamp")
        last = entry.get("timestamp")
        baselines[_baseline_revision(entry)] += 1
        before_effect = str(before.get("effect"))
        before_counts[before_effect] += 1
        try:
            after = evaluate(pack, replay_input(logged_input))
            after_effect = str(after["effect"])
        except Exception:  # a candidate that fails to evaluate would deny in production (fail closed)
            errors += 1
            error_ids.append(decision_id)
            after_counts["error"] += 1
            continue
        after_counts[after_effect] += 1

        effect_diff = before_effect != after_effect
        fields_diff = _fields(before) != _fields(after)
        oblig_diff = _obligations(before) != _obligations(after)
        level_before, level_after = _level(before), _level(after)
        level_diff = level_before != level_after and level_before is not None and level_after is not None
        for reason in sorted(_reasons(after) - _reasons(before)):
            added[reason] += 1
        for reason in sorted(_reasons(before) - _reasons(after)):
            removed[reason] += 1
        score_before, score_after = _score(before), _score(after)
        if score_before is not None and score_after is not None:
            deltas.append(score_after - score_before)
        if effect_diff:
            effect_changed += 1
            transitions[(before_effect, after_effect)].append(decision_id)
        if level_diff:
            level_moves[(str(level_before), str(level_after))].append(decision_id)
        fields_changed += fields_diff
        obligations_changed += oblig_diff
        if effect_diff or fields_diff or oblig_diff or level_diff:
            changed += 1
            changed_ids.append(decision_id)
        else:
            unchanged += 1

    if progress is not None:
        progress(total, total)
    replayed = total - skipped - fail_closed
    if total and replayed == 0 and fail_closed == 0:
        raise SimulationError(f"none of the {total} log entries has a replayable input and result")
    reasons = sorted(
        (ReasonChange(reason=r, added=added[r], removed=removed[r]) for r in set(added) | set(removed)),
        key=lambda c: (-(c.added + c.removed), c.reason),
    )[:top]
    return SimulationReport(
        candidate={"revision": pack.revision, "digest": pack.digest},
        baseline_revisions=dict(sorted(baselines.items())),
        window={"first": first, "last": last},
        total=total,
        replayed=replayed,
        skipped=skipped,
        fail_closed=fail_closed,
        errors=errors,
        error_samples=error_ids[:samples],
        unchanged=unchanged,
        changed=changed,
        effect_changed=effect_changed,
        fields_changed=fields_changed,
        obligations_changed=obligations_changed,
        effects_before=dict(sorted(before_counts.items())),
        effects_after=dict(sorted(after_counts.items())),
        transitions=_moves(transitions, samples),
        risk_level_moves=_moves(level_moves, samples),
        risk_score={
            "mean_delta": round(sum(deltas) / len(deltas), 3) if deltas else 0.0,
            "max_increase": round(max([d for d in deltas if d > 0], default=0.0), 3),
            "max_decrease": round(min([d for d in deltas if d < 0], default=0.0), 3),
        },
        reasons=reasons,
        changed_samples=changed_ids[:samples],
    )
