"""Best checkpoint: score every exported checkpoint on the gate's prompts, make the best the default.

With ``gate.best_checkpoint: true`` and intermediate checkpoints exported
(``export_last_checkpoint_only: false``; the poller records ``tuning.checkpoints`` as
``[{checkpoint_id, epoch, step, endpoint}]``), the completion handler:

1. scores each checkpoint endpoint on the gate's prompts (the smoke-test prompts with a
   reference) with the gate's metric (:func:`shared.gate.metric_score`; a failed call scores 0).
   Answers the smoke test already has for an endpoint (the tuned endpoint always, checkpoint
   endpoints with ``smoke_test.checkpoints: true``) are reused, the rest are prompted here;
2. picks the highest mean score; **ties go to the later checkpoint** (higher epoch, then step):
   Vertex makes the last checkpoint the default, so on equal evidence the choice keeps what
   Vertex chose, and the later checkpoint has seen more of the training data;
3. makes it the model's default checkpoint: ``models.patch`` with ``defaultCheckpointId``
   (https://cloud.google.com/vertex-ai/docs/reference/rest/v1beta1/projects.locations.models/patch),
   through :meth:`shared.ports.TuningBackend.set_default_checkpoint`;
4. the choice and every checkpoint's score go into ``record.gate["checkpoints"]`` and
   ``gate.json``; the gate then judges the best checkpoint's answers, and the lineage's live
   model is served by its endpoint (:func:`shared.gate.serving_endpoint`);
5. with ``cleanup.enabled`` the other checkpoint endpoints are undeployed (and deleted when
   empty) by :func:`shared.cleanup.undeploy_endpoints`, under its own claim.

Fewer than two scored checkpoints: nothing to choose; the record says why and no call is made.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from shared.gate import GateOptions, metric_score
from shared.model_families import generation_settings
from shared.ports import TuningBackend
from shared.records import JSON, JobRecord
from shared.retry import RetryPolicy, Sleep
from shared.smoke_test import (
    PromptResult,
    SmokeTarget,
    SmokeTestOptions,
    SmokeTestResult,
    TargetRole,
    run_prompt,
)


@dataclass(frozen=True)
class CheckpointScore:
    """One checkpoint's mean score on the gate's prompts."""

    checkpoint_id: str
    epoch: int | None
    step: int | None
    endpoint: str
    score: float
    scored: int
    answers: tuple[PromptResult, ...] = ()

    @property
    def order(self) -> tuple[int, int]:
        """Training order (epoch, step): larger is later."""
        return (self.epoch if self.epoch is not None else -1, self.step if self.step is not None else -1)

    def to_dict(self) -> JSON:
        """JSON form (a row of the record's checkpoint table)."""
        return {
            "checkpoint_id": self.checkpoint_id,
            "epoch": self.epoch,
            "step": self.step,
            "endpoint": self.endpoint,
            "score": round(self.score, 4),
            "scored": self.scored,
        }


@dataclass(frozen=True)
class CheckpointChoice:
    """What :func:`choose_checkpoint` decided."""

    metric: str
    scores: tuple[CheckpointScore, ...]
    best: CheckpointScore | None
    reason: str

    def to_dict(self) -> JSON:
        """The ``record.gate["checkpoints"]`` form."""
        return {
            "metric": self.metric,
            "best": self.best.to_dict() if self.best else None,
            "reason": self.reason,
            "scores": [s.to_dict() for s in self.scores],
        }


def pick_best(scores: Sequence[CheckpointScore]) -> tuple[CheckpointScore | None, str]:
    """The highest score; ties -> the later checkpoint (see the module docstring).

    >>> a = CheckpointScore("1", 1, 10, "e1", 0.5, 3)
    >>> b = CheckpointScore("2", 2, 20, "e2", 0.5, 3)
    >>> pick_best([a, b])[0].checkpoint_id
    '2'
    """
    scored = [s for s in scores if s.scored > 0]
    if len(scored) < 2:
        return None, f"{len(scored)} scored checkpoint(s): nothing to choose between"
    best = max(scored, key=lambda s: (round(s.score, 9), s.order))
    tied = [s.checkpoint_id for s in scored if s is not best and round(s.score, 9) == round(best.score, 9)]
    reason = f"checkpoint {best.checkpoint_id} has the highest mean score {best.score:.4f}"
    if tied:
        reason += f" (tied with {', '.join(tied)}: the later checkpoint wins, as Vertex's own default is the last)"
    return best, reason


def _checkpoints(record: JobRecord) -> list[Mapping[str, object]]:
    raw = (record.tuning.checkpoints if record.tuning else None) or []
    return [c for c in raw if isinstance(c, Mapping) and isinstance(c.get("endpoint"), str) and c.get("endpoint")]


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def score_checkpoints(
    record: JobRecord,
    smoke: SmokeTestResult,
    *,
    options: GateOptions,
    smoke_options: SmokeTestOptions,
    tuning: TuningBackend,
    retry: RetryPolicy,
    sleep: Sleep = time.sleep,
) -> CheckpointChoice:
    """Score every recorded checkpoint endpoint and pick the best (no backend change here).

    Retryable generation failures propagate (the caller holds a claim and releases it).
    """
    indexed = [(r.index, r.prompt) for r in smoke.results if r.target.role is TargetRole.TUNED and r.prompt.reference]
    known: dict[tuple[str, int], PromptResult] = {(r.target.name, r.index): r for r in smoke.results}
    generation = generation_settings(smoke.base_model or None, answer_tokens=smoke_options.max_output_tokens)
    scores: list[CheckpointScore] = []
    for checkpoint in _checkpoints(record):
        endpoint = str(checkpoint["endpoint"])
        checkpoint_id = str(checkpoint.get("checkpoint_id") or "")
        target = SmokeTarget(TargetRole.CHECKPOINT, endpoint, f"checkpoint-{checkpoint_id}")
        answers: list[PromptResult] = []
        for index, prompt in indexed:
            answers.append(
                known.get((endpoint, index))
                or run_prompt(
                    index,
                    prompt,
                    target,
                    tuning=tuning,
                    options=smoke_options,
                    generation=generation,
                    retry=retry,
                    sleep=sleep,
                )
            )
        values = [
            0.0 if a.error is not None else metric_score(a.response, a.prompt.reference or "", options.metric)
            for a in answers
        ]
        scores.append(
            CheckpointScore(
                checkpoint_id,
                _int_or_none(checkpoint.get("epoch")),
                _int_or_none(checkpoint.get("step")),
                endpoint,
                sum(values) / len(values) if values else 0.0,
                len(values),
                tuple(answers),
            )
        )
    if not indexed:
        return CheckpointChoice(options.metric, tuple(scores), None, "no gate prompt has a reference answer")
    best, reason = pick_best(scores)
    return CheckpointChoice(options.metric, tuple(scores), best, reason)


def best_answers(choice: CheckpointChoice, tuned_endpoint: str) -> tuple[PromptResult, ...] | None:
    """The best checkpoint's answers for the gate, as the tuned model's (None: keep the tuned ones)."""
    best = choice.best
    if best is None or best.endpoint == tuned_endpoint:
        return None
    tuned = SmokeTarget(TargetRole.TUNED, best.endpoint, "tuned")
    return tuple(replace(a, target=tuned) for a in best.answers)


def other_endpoints(record: JobRecord, choice: Mapping[str, object] | None) -> tuple[str, ...]:
    """Checkpoint endpoints (and the tuned endpoint) of ``record`` that do not serve the best one."""
    best = (choice or {}).get("best")
    best_endpoint = best.get("endpoint") if isinstance(best, Mapping) else None
    if not best_endpoint:
        return ()
    found: list[str] = []
    tuned = record.tuning.endpoint if record.tuning else None
    for endpoint in [tuned, *(c.get("endpoint") for c in _checkpoints(record))]:
        if isinstance(endpoint, str) and endpoint and endpoint != best_endpoint and endpoint not in found:
            found.append(endpoint)
    return tuple(found)
