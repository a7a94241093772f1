"""The quality gate: does a new tuned model replace the lineage's live model?

``tuning.yaml``::

    gate:
      enabled: true            # default false: every passing model may supersede older ones
      against: [live, base]    # the lineage's live (promoted) model and/or the base model
      metric: rougeL           # rouge1 | rouge2 | rougeL | exact_match
      margin: 0.0              # required improvement of the mean score
      on_reject: keep          # keep | retire (the new model, when HELD or REJECTED)
      confidence: 0.95         # two-sided level of the bootstrap interval
      bootstrap_samples: 2000  # resamples of the paired bootstrap
      seed: 0                  # the bootstrap's seed: the same answers always give the same verdict
      min_prompts: 3           # fewer scored prompts than this: HELD (too little evidence)
      best_checkpoint: false   # score every exported checkpoint, make the best the default one

``best_checkpoint`` (:mod:`shared.best_checkpoint`) runs before the verdict: with intermediate
checkpoints exported, the gate's prompts are scored on every checkpoint endpoint, the best
becomes the model's default checkpoint, and the gate judges that checkpoint's answers. The
lineage's live model is then served by that checkpoint's endpoint (:func:`serving_endpoint`).

The prompts are the smoke test's prompts that carry a ``reference`` (explicit ``prompts:``
with ``reference:``, or the first ``smoke_test.from_validation`` validation examples, whose
model turn is the reference). Each prompt is scored with ``metric`` for the new model and for
each comparison model; per prompt the new answer WINS, LOSES or TIES.

**The statistic: a paired bootstrap of the mean score difference.** For each comparison the
per-prompt differences ``d_i = new_i - old_i`` are resampled with replacement
``bootstrap_samples`` times (``random.Random(seed)``: deterministic) and the percentile
interval of their mean at ``confidence`` is taken. Why a bootstrap and not a sign test: ROUGE
scores are continuous, and a sign test throws away how much better or worse an answer got (a
model that is slightly better on 6 prompts and much worse on 4 would pass a sign test's
majority); the paired bootstrap keeps magnitudes and pairing (each prompt is its own control),
needs no normality assumption, and also works for 0/1 ``exact_match`` scores. Its weakness is
small samples, hence ``min_prompts``.

The rule per comparison: the interval's lower end above ``margin`` -> PROMOTED (confidently
better by more than the margin); its upper end below 0 -> REJECTED (confidently worse);
anything else -> HELD (not better enough, or too noisy to tell). Overall: a failed smoke test
is REJECTED (the smoke checks still apply); any REJECTED comparison -> REJECTED; every
comparison PROMOTED -> PROMOTED; else HELD. ``live`` with no live model yet (the lineage's
first model) is skipped with a note; if no comparison remains, the model is PROMOTED as the
lineage's first live model.

**Where "live" is kept:** on the job records themselves. The lineage's live model is the newest
SUCCEEDED record (by ``created_at``) whose ``gate.verdict`` is ``PROMOTED`` and which has not
been retired (:func:`find_live`). The verdict and the liveness are therefore one field written
in the same ``jobs.update`` that stages the ``model.*`` event, so they can never disagree, and
no second document (with its own transaction and repair path) is needed; the lookup reuses the
cleanup's query (lineage + status, ordered by ``created_at``), whose index is declared.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.events import EventType
from shared.model_families import generation_settings
from shared.ports import TuningBackend
from shared.record_parts import ResolvedConfig, TuningView
from shared.records import JSON, JobRecord
from shared.retry import RetryPolicy, Sleep
from shared.scoring import rouge_scores, tokenize
from shared.smoke_test import (
    PromptResult,
    SmokeTarget,
    SmokeTestOptions,
    SmokeTestResult,
    TargetRole,
    run_prompt,
)

GATE_METRICS: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "exact_match")
GATE_AGAINST: tuple[str, ...] = ("live", "base")
ON_REJECT: tuple[str, ...] = ("keep", "retire")
REPORT_FILE = "gate.json"


class Verdict(StrEnum):
    """The gate's decision on a new model."""

    PROMOTED = "PROMOTED"
    """Confidently better: it becomes the lineage's live model; predecessors may be retired."""
    HELD = "HELD"
    """Not better enough (or too noisy to tell): kept or retired by ``on_reject``; live unchanged."""
    REJECTED = "REJECTED"
    """Confidently worse, or its smoke test failed: live unchanged."""


GATE_EVENT_FOR_VERDICT: dict[Verdict, EventType] = {
    Verdict.PROMOTED: EventType.MODEL_PROMOTED,
    Verdict.HELD: EventType.MODEL_HELD,
    Verdict.REJECTED: EventType.MODEL_REJECTED,
}
"""The one event each verdict publishes (id ``<job_id>:gate``)."""


class PromptOutcome(StrEnum):
    """The new answer against the comparison model's answer on one prompt."""

    WIN = "win"
    LOSS = "loss"
    TIE = "tie"


# --- options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateOptions:
    """The ``gate`` section of the resolved tuning config (also its validated config form)."""

    enabled: bool = False
    against: tuple[str, ...] = GATE_AGAINST
    metric: str = "rougeL"
    margin: float = 0.0
    on_reject: str = "keep"
    confidence: float = 0.95
    bootstrap_samples: int = 2000
    seed: int = 0
    min_prompts: int = 3
    best_checkpoint: bool = False

    @classmethod
    def from_config(cls, config: ResolvedConfig | Mapping[str, Any] | None) -> GateOptions:
        """Read ``record.config.gate`` (intake validated it; missing keys take defaults)."""
        # record.config (typed) or a plain config dict (tuning_config checks a tuning.yaml section).
        section = config.gate if isinstance(config, ResolvedConfig) else (config or {}).get("gate") or {}
        d = cls()
        return cls(
            enabled=bool(section.get("enabled", d.enabled)),
            against=tuple(section.get("against") or d.against),
            metric=str(section.get("metric") or d.metric),
            margin=float(section.get("margin", d.margin) or 0.0),
            on_reject=str(section.get("on_reject") or d.on_reject),
            confidence=float(section.get("confidence") or d.confidence),
            bootstrap_samples=int(section.get("bootstrap_samples") or d.bootstrap_samples),
            seed=int(section.get("seed", d.seed) or 0),
            min_prompts=int(section.get("min_prompts", d.min_prompts) or 1),
            best_checkpoint=bool(section.get("best_checkpoint", d.best_checkpoint)),
        )

    def to_dict(self) -> JSON:
        """JSON-ready view (the ``record.config["gate"]`` form)."""
        return {
            "enabled": self.enabled,
            "against": list(self.against),
            "metric": self.metric,
            "margin": self.margin,
            "on_reject": self.on_reject,
            "confidence": self.confidence,
            "bootstrap_samples": self.bootstrap_samples,
            "seed": self.seed,
            "min_prompts": self.min_prompts,
            "best_checkpoint": self.best_checkpoint,
        }


def check_gate_section(section: Mapping[str, Any]) -> tuple[JSON, list[tuple[str, str]]]:
    """Validate a ``gate:`` mapping from one tuning.yaml layer.

    Returns the cleaned values (only the keys the layer sets; ``null`` kept as None) and the
    problems as ``(key, message)`` pairs, for :mod:`shared.tuning_config` to report with paths.

    >>> check_gate_section({"metric": "bleu"})[1]
    [('metric', "must be one of rouge1, rouge2, rougeL, exact_match (got 'bleu')")]
    """
    out: JSON = {}
    problems: list[tuple[str, str]] = []
    known = set(GateOptions().to_dict())
    for key, value in section.items():
        if key not in known:
            problems.append((key, f"unknown key; known keys: {', '.join(sorted(known))}"))
            continue
        if value is None:
            out[key] = None
            continue
        problem = _check_gate_value(key, value)
        if problem:
            problems.append((key, problem))
        else:
            out[key] = list(value) if key == "against" else float(value) if key in ("margin", "confidence") else value
    return out, problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_gate_value(key: str, value: Any) -> str | None:
    if key in ("enabled", "best_checkpoint"):
        return None if isinstance(value, bool) else f"must be true or false (got {value!r})"
    if key == "against":
        if (
            not isinstance(value, list)
            or not value
            or any(v not in GATE_AGAINST for v in value)
            or len(set(value)) != len(value)
        ):
            return f"must be a non-empty list of distinct values from {', '.join(GATE_AGAINST)} (got {value!r})"
        return None
    if key == "metric":
        return None if value in GATE_METRICS else f"must be one of {', '.join(GATE_METRICS)} (got {value!r})"
    if key == "on_reject":
        return None if value in ON_REJECT else f"must be one of {', '.join(ON_REJECT)} (got {value!r})"
    if key == "margin":
        return None if _is_number(value) and 0 <= value <= 1 else f"must be a number from 0 to 1 (got {value!r})"
    if key == "confidence":
        ok = _is_number(value) and 0.5 <= value < 1
        return None if ok else f"must be a number from 0.5 to below 1 (got {value!r})"
    if key == "bootstrap_samples":
        ok = _is_int(value) and 100 <= value <= 100_000
        return None if ok else f"must be an integer from 100 to 100000 (got {value!r})"
    if key == "seed":
        return None if _is_int(value) else f"must be an integer (got {value!r})"
    ok = _is_int(value) and 1 <= value <= 100  # min_prompts
    return None if ok else f"must be an integer from 1 to 100 (got {value!r})"


# --- statistics --------------------------------------------------------------------------------


def metric_score(answer: str, reference: str, metric: str) -> float:
    """One answer's score against its reference, in [0, 1].

    ``exact_match`` compares the token lists of :func:`shared.scoring.tokenize` (case and
    punctuation do not count).

    >>> metric_score("Hello, World!", "hello world", "exact_match")
    1.0
    >>> round(metric_score("the cat sat", "the cat", "rouge1"), 4)
    0.8
    """
    if metric == "exact_match":
        return 1.0 if tokenize(answer) == tokenize(reference) else 0.0
    return float(getattr(rouge_scores(answer, reference), metric))


def paired_bootstrap_interval(
    deltas: Sequence[float], *, samples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Percentile interval of the mean of ``deltas`` under resampling with replacement.

    Deterministic for a given seed.

    >>> paired_bootstrap_interval([0.5, 0.5, 0.5], samples=200, confidence=0.95, seed=0)
    (0.5, 0.5)
    """
    n = len(deltas)
    if n == 0:
        return (0.0, 0.0)
    rng = random.Random(seed)
    means = sorted(sum(deltas[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    tail = (1.0 - confidence) / 2.0
    low = means[min(int(tail * samples), samples - 1)]
    high = means[max(min(int((1.0 - tail) * samples), samples - 1), 0)]
    return (round(low, 6), round(high, 6))


@dataclass(frozen=True)
class PromptComparison:
    """One prompt: the new model's score, the comparison model's, and who won."""

    index: int
    prompt: str
    new_score: float
    old_score: float

    @property
    def outcome(self) -> PromptOutcome:
        """WIN / LOSS / TIE (exactly equal scores tie)."""
        if self.new_score > self.old_score:
            return PromptOutcome.WIN
        if self.new_score < self.old_score:
            return PromptOutcome.LOSS
        return PromptOutcome.TIE

    def to_dict(self) -> JSON:
        """JSON form (a row of the per-prompt table)."""
        return {
            "index": self.index,
            "prompt": self.prompt[:200],
            "new": round(self.new_score, 4),
            "old": round(self.old_score, 4),
            "outcome": self.outcome.value,
        }


@dataclass(frozen=True)
class Comparison:
    """The new model against one comparison model (``live`` or ``base``)."""

    against: str
    model: str
    prompts: tuple[PromptComparison, ...]
    verdict: Verdict
    reason: str
    ci_low: float = 0.0
    ci_high: float = 0.0

    @property
    def new_mean(self) -> float:
        """Mean score of the new model."""
        return sum(p.new_score for p in self.prompts) / len(self.prompts) if self.prompts else 0.0

    @property
    def old_mean(self) -> float:
        """Mean score of the comparison model."""
        return sum(p.old_score for p in self.prompts) / len(self.prompts) if self.prompts else 0.0

    def count(self, outcome: PromptOutcome) -> int:
        """How many prompts ended with ``outcome``."""
        return sum(1 for p in self.prompts if p.outcome is outcome)

    def to_dict(self) -> JSON:
        """JSON form (scores, interval, wins/losses/ties and the per-prompt table)."""
        return {
            "against": self.against,
            "model": self.model,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "new_mean": round(self.new_mean, 4),
            "old_mean": round(self.old_mean, 4),
            "delta": round(self.new_mean - self.old_mean, 4),
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "wins": self.count(PromptOutcome.WIN),
            "losses": self.count(PromptOutcome.LOSS),
            "ties": self.count(PromptOutcome.TIE),
            "prompts": [p.to_dict() for p in self.prompts],
        }


def compare(against: str, model: str, rows: Sequence[PromptComparison], options: GateOptions) -> Comparison:
    """Apply the rule of the module docstring to one comparison.

    >>> rows = [PromptComparison(i, "q", 1.0, 0.0) for i in range(5)]
    >>> compare("base", "m", rows, GateOptions()).verdict
    <Verdict.PROMOTED: 'PROMOTED'>
    """
    if len(rows) < options.min_prompts:
        return Comparison(
            against,
            model,
            tuple(rows),
            Verdict.HELD,
            f"{len(rows)} scored prompt(s), fewer than gate.min_prompts={options.min_prompts}: too little evidence",
        )
    deltas = [r.new_score - r.old_score for r in rows]
    low, high = paired_bootstrap_interval(
        deltas, samples=options.bootstrap_samples, confidence=options.confidence, seed=options.seed
    )
    mean = sum(deltas) / len(deltas)
    interval = f"{options.metric} difference {mean:+.4f}, {options.confidence:.0%} interval [{low:+.4f}, {high:+.4f}]"
    if low > options.margin:
        verdict, why = Verdict.PROMOTED, f"better than {against}: {interval} lies above the margin {options.margin}"
    elif high < 0:
        verdict, why = Verdict.REJECTED, f"worse than {against}: {interval} lies below 0"
    else:
        verdict, why = Verdict.HELD, f"not better enough than {against}: {interval} (margin {options.margin})"
    return Comparison(against, model, tuple(rows), verdict, why, low, high)


def overall_verdict(smoke_passed: bool, comparisons: Sequence[Comparison]) -> tuple[Verdict, str]:
    """Combine the comparisons (see the module docstring)."""
    if not smoke_passed:
        return Verdict.REJECTED, "the smoke test failed"
    rejected = [c for c in comparisons if c.verdict is Verdict.REJECTED]
    if rejected:
        return Verdict.REJECTED, "; ".join(c.reason for c in rejected)
    if not comparisons:
        return Verdict.PROMOTED, "no model to compare with: the lineage's first live model"
    held = [c for c in comparisons if c.verdict is Verdict.HELD]
    if held:
        return Verdict.HELD, "; ".join(c.reason for c in held)
    return Verdict.PROMOTED, "; ".join(c.reason for c in comparisons)


# --- live model --------------------------------------------------------------------------------


def gate_verdict_of(record: JobRecord) -> Verdict | None:
    """The recorded gate verdict of a job, if the gate ran."""
    raw = record.gate.verdict if record.gate else None
    try:
        return Verdict(raw) if raw else None
    except ValueError:
        return None


def serving_endpoint(record: JobRecord) -> str:
    """The endpoint that serves a job's model: its best checkpoint's, else the tuned endpoint."""
    best = ((record.gate.checkpoints if record.gate else None) or {}).get("best") or {}
    return str(best.get("endpoint") or (record.tuning.endpoint if record.tuning else None) or "")


def find_live(candidates: Iterable[JobRecord], *, exclude: str = "") -> JobRecord | None:
    """The lineage's live model: the newest promoted, not retired record (candidates newest first)."""
    for record in candidates:
        if record.id == exclude or (record.cleanup and record.cleanup.retired_by):
            continue
        if gate_verdict_of(record) is Verdict.PROMOTED and serving_endpoint(record):
            return record
    return None


# --- running the gate --------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    """Everything the gate decided, for the record, the report and the event."""

    verdict: Verdict
    reason: str
    metric: str
    comparisons: tuple[Comparison, ...]
    notes: tuple[str, ...] = ()
    live_before: str | None = None
    """Job id of the live model the new one was compared with (None: there was none)."""
    answers: tuple[JSON, ...] = field(default=())
    """Comparison models' answers (for the report file only)."""

    def to_dict(self, *, with_answers: bool = False) -> JSON:
        """JSON form: the record's ``gate`` field (answers only in the report)."""
        out: JSON = {
            "verdict": self.verdict.value,
            "reason": self.reason,
            "metric": self.metric,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "notes": list(self.notes),
            "live_before": self.live_before,
        }
        if with_answers:
            out["answers"] = list(self.answers)
        return out


def _scored_rows(
    new: Sequence[PromptResult], old: Mapping[int, PromptResult], metric: str, notes: list[str], label: str
) -> list[PromptComparison]:
    rows: list[PromptComparison] = []
    for result in new:
        reference = result.prompt.reference
        if reference is None:
            continue
        other = old.get(result.index)
        if other is None or other.error is not None:
            notes.append(f"prompt {result.index + 1}: no answer from {label}; left out")
            continue
        rows.append(
            PromptComparison(
                result.index,
                result.prompt.text,
                0.0 if result.error is not None else metric_score(result.response, reference, metric),
                metric_score(other.response, reference, metric),
            )
        )
    return rows


def run_gate(
    record: JobRecord,
    smoke: SmokeTestResult,
    *,
    live: JobRecord | None,
    options: GateOptions,
    smoke_options: SmokeTestOptions,
    tuning: TuningBackend,
    retry: RetryPolicy,
    sleep: Sleep = time.sleep,
    new_answers: Sequence[PromptResult] | None = None,
) -> GateResult:
    """Score the new model's smoke answers against ``live``'s and/or the base model's answers.

    ``new_answers`` replaces the tuned endpoint's answers (the best checkpoint's, when
    ``best_checkpoint`` chose one that is not the tuned endpoint).
    The new model's answers are the smoke test's (no prompt runs twice); the base answers are
    reused when ``compare_base`` produced them; the live model's endpoint is prompted here.
    Retryable generation failures propagate (the caller holds a claim and releases it).
    """
    notes: list[str] = []
    new = [r for r in smoke.results if r.target.role is TargetRole.TUNED] if new_answers is None else list(new_answers)
    prompts = [r for r in new if r.prompt.reference is not None]
    if not prompts:
        notes.append("no smoke-test prompt has a reference answer: nothing to score")
    base_model = smoke.base_model or ""
    generation = generation_settings(base_model or None, answer_tokens=smoke_options.max_output_tokens)
    comparisons: list[Comparison] = []
    answers: list[JSON] = []
    for against in options.against:
        if against == "live":
            endpoint = serving_endpoint(live) if live else ""
            if live is None or not endpoint:
                notes.append("no live model in the lineage yet: not compared with live")
                continue
            target = SmokeTarget(TargetRole.TUNED, endpoint, "live")
            model = str((live.tuning.tuned_model if live.tuning else None) or endpoint)
        else:
            if not base_model:
                notes.append("no base model recorded: not compared with base")
                continue
            target = SmokeTarget(TargetRole.BASE, base_model, "base")
            model = base_model
        reuse = {r.index: r for r in smoke.base_results} if against == "base" else {}
        old: dict[int, PromptResult] = {}
        for result in prompts:
            old[result.index] = reuse.get(result.index) or run_prompt(
                result.index,
                result.prompt,
                target,
                tuning=tuning,
                options=smoke_options,
                generation=generation,
                retry=retry,
                sleep=sleep,
            )
        answers.extend({"against": against, **r.to_dict(max_chars=None)} for r in old.values())
        rows = _scored_rows(prompts, old, options.metric, notes, against)
        comparisons.append(compare(against, model, rows, options))
    verdict, reason = overall_verdict(smoke.passed, comparisons)
    return GateResult(
        verdict=verdict,
        reason=reason,
        metric=options.metric,
        comparisons=tuple(comparisons),
        notes=tuple(notes),
        live_before=live.id if live else None,
        answers=tuple(answers),
    )


def gate_event_data(record: JobRecord, result: GateResult, report_uri: str | None) -> JSON:
    """Data fields of the ``model.promoted|held|rejected`` events."""
    tuning = record.tuning or TuningView()
    return {
        "dataset": record.dataset.uri,
        "tuning_job": record.tuning_job,
        "tuned_model": tuning.tuned_model,
        "endpoint": serving_endpoint(record) or None,
        "verdict": result.verdict.value,
        "reason": result.reason,
        "metric": result.metric,
        "live_before": result.live_before,
        "comparisons": [{k: v for k, v in c.to_dict().items() if k != "prompts"} for c in result.comparisons],
        "report_uri": report_uri,
    }
