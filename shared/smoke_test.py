"""Smoke tests of a tuned model: which prompts, which checks, how to call, what counts as passed.

Prompts come, in this order of preference, from the dataset's ``tuning.yaml``
(``smoke_test.prompts``), from the first ``from_validation`` held-out examples of the
validation set (the prompt is the conversation up to its last model turn, the reference is that
model turn's text), or from ``default_prompt``. Each prompt runs on the tuned endpoint (and on
every exported checkpoint endpoint with ``checkpoints: true``) with deterministic settings:
temperature 0 and the least thinking the base model's family allows (budget 0 where thinking
can be turned off, the documented minimum on 2.5 Pro, the lowest ``thinking_level`` on Gemini 3),
with ``max_output_tokens`` raised by the thinking budget so the answer keeps its room (the facts
and their sources are the table in :mod:`shared.model_families`). The base model comes from the
job record (:func:`base_model_of`), also when the job tuned a tuned model.

Checks are data: each kind is a small class with ``evaluate(text) -> CheckVerdict``. A prompt
passes when its response is non-empty and every configured check passes; the smoke test passes
when every prompt passes on every tested endpoint. ``reference`` is not a pass/fail check: it
feeds the ROUGE scores (and the optional base-vs-tuned comparison).

Example:
    >>> checks = checks_from_config({"prompt": "hi", "contains": ["Acme"], "max_chars": 20})
    >>> [v.passed for v in evaluate_checks(checks, "Hi from Acme")]
    [True, True, True]
    >>> evaluate_checks(checks, "")[0].detail
    'response is empty'
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from shared.errors import BlobNotFoundError, ErrorInfo, is_retryable
from shared.model_families import GenerationSettings, generation_settings, is_tuned_model_name
from shared.ports import BlobStore, GenerationRequest, GenerationResult, TuningBackend
from shared.record_parts import ResolvedConfig, TuningView
from shared.records import JSON, JobRecord
from shared.retry import RetryPolicy, Sleep, call_with_retries
from shared.scoring import RougeScores, mean_scores, rouge_scores

DEFAULT_PROMPT = "Say hello."
MAX_STORED_CHARS = 2000
"""Responses and prompts are cut to this length on the job record (the report keeps them whole)."""
MAX_PROGRESS_CHARS = 400_000
"""Calls kept on the record when an invocation runs out of time (Firestore documents stop at
1 MiB); calls beyond it are simply run again by the redelivery."""


# --- options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmokeTestOptions:
    """The ``smoke_test`` section of the resolved tuning config (defaults as in tuning.yaml)."""

    enabled: bool = True
    prompts: tuple[JSON, ...] = ()
    from_validation: int = 5
    default_prompt: str = DEFAULT_PROMPT
    checkpoints: bool = False
    compare_base: bool = False
    max_output_tokens: int = 256
    timeout_seconds: float = 30.0

    @classmethod
    def from_config(cls, config: ResolvedConfig | Mapping[str, Any] | None) -> SmokeTestOptions:
        """Read ``record.config.smoke_test`` (intake validated it; missing keys take defaults)."""
        section = config.smoke_test if isinstance(config, ResolvedConfig) else (config or {}).get("smoke_test") or {}
        defaults = cls()
        return cls(
            enabled=bool(section.get("enabled", defaults.enabled)),
            prompts=tuple(dict(p) for p in section.get("prompts") or () if isinstance(p, Mapping)),
            from_validation=int(section.get("from_validation", defaults.from_validation) or 0),
            default_prompt=str(section.get("default_prompt") or defaults.default_prompt),
            checkpoints=bool(section.get("checkpoints", defaults.checkpoints)),
            compare_base=bool(section.get("compare_base", defaults.compare_base)),
            max_output_tokens=int(section.get("max_output_tokens") or defaults.max_output_tokens),
            timeout_seconds=float(section.get("timeout_seconds") or defaults.timeout_seconds),
        )


def base_model_of(record: JobRecord) -> str | None:
    """The Gemini base model a record's tuned endpoint derives from, or None when unknown.

    The tuning view's ``base_model`` is what Vertex reported for the job: ``baseModel``, or for
    a job that tuned a tuned model (continuous tuning) ``preTunedModel.baseModel``, the Gemini
    model at the root of that chain (output only, see
    https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs#PreTunedModel).
    The config's ``base_model`` is used when the view has none; a tuned-model name is not a
    family and is skipped.

    >>> from shared.records import DatasetRef, new_record, utcnow
    >>> rec = new_record(DatasetRef("b", "datasets/faq/v1.jsonl", 7, "faq"), utcnow())
    >>> base_model_of(rec.with_changes(utcnow(), config=ResolvedConfig(base_model="projects/p/locations/l/models/9@1"),
    ...                                tuning=TuningView(base_model="gemini-2.5-pro")))
    'gemini-2.5-pro'
    """
    for candidate in (record.tuning and record.tuning.base_model, record.config and record.config.base_model):
        if isinstance(candidate, str) and candidate and not is_tuned_model_name(candidate):
            return candidate
    return None


# --- checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckVerdict:
    """The outcome of one check on one response."""

    kind: str
    passed: bool
    detail: str

    def to_dict(self) -> JSON:
        """``{"kind", "passed", "detail"}``."""
        return {"kind": self.kind, "passed": self.passed, "detail": self.detail}


class Check(Protocol):
    """One assertion about a response."""

    kind: ClassVar[str]

    def evaluate(self, text: str) -> CheckVerdict:
        """Verdict and a human-readable reason."""
        ...


@dataclass(frozen=True)
class NonEmptyCheck:
    """The response has visible text (always applied: an empty answer never passes)."""

    kind: ClassVar[str] = "non_empty"

    def evaluate(self, text: str) -> CheckVerdict:
        """Pass when the stripped text is not empty."""
        if text.strip():
            return CheckVerdict(self.kind, True, f"{len(text)} chars")
        return CheckVerdict(self.kind, False, "response is empty")


@dataclass(frozen=True)
class ContainsCheck:
    """Every needle occurs in the response (case-sensitive substring)."""

    needles: tuple[str, ...]
    kind: ClassVar[str] = "contains"

    def evaluate(self, text: str) -> CheckVerdict:
        """Pass when no needle is missing."""
        missing = [n for n in self.needles if n not in text]
        if missing:
            return CheckVerdict(self.kind, False, "missing " + ", ".join(repr(m) for m in missing))
        return CheckVerdict(self.kind, True, "found " + ", ".join(repr(n) for n in self.needles))


@dataclass(frozen=True)
class RegexCheck:
    """The pattern matches somewhere in the response (``re.search``; anchor with ``^``/``$``)."""

    pattern: str
    kind: ClassVar[str] = "regex"

    def evaluate(self, text: str) -> CheckVerdict:
        """Pass on a match; an invalid pattern fails with the compiler's message."""
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            return CheckVerdict(self.kind, False, f"invalid pattern {self.pattern!r}: {exc}")
        if compiled.search(text):
            return CheckVerdict(self.kind, True, f"matches {self.pattern!r}")
        return CheckVerdict(self.kind, False, f"no match for {self.pattern!r}")


@dataclass(frozen=True)
class MaxCharsCheck:
    """The response is at most ``limit`` characters long."""

    limit: int
    kind: ClassVar[str] = "max_chars"

    def evaluate(self, text: str) -> CheckVerdict:
        """Pass when ``len(text) <= limit``."""
        if len(text) <= self.limit:
            return CheckVerdict(self.kind, True, f"{len(text)} <= {self.limit} chars")
        return CheckVerdict(self.kind, False, f"{len(text)} chars > limit {self.limit}")


def checks_from_config(entry: Mapping[str, Any]) -> tuple[Check, ...]:
    """The checks of one configured prompt; :class:`NonEmptyCheck` always comes first."""
    checks: list[Check] = [NonEmptyCheck()]
    contains = entry.get("contains")
    if isinstance(contains, str) and contains:
        checks.append(ContainsCheck((contains,)))
    elif isinstance(contains, Sequence) and contains:
        checks.append(ContainsCheck(tuple(str(c) for c in contains)))
    if entry.get("regex"):
        checks.append(RegexCheck(str(entry["regex"])))
    if entry.get("max_chars") is not None:
        checks.append(MaxCharsCheck(int(entry["max_chars"])))
    return tuple(checks)


def evaluate_checks(checks: Sequence[Check], text: str) -> list[CheckVerdict]:
    """Every check's verdict, in order."""
    return [check.evaluate(text) for check in checks]


# --- prompts -----------------------------------------------------------------------------------


class PromptSource(StrEnum):
    """Where the smoke-test prompts came from."""

    CONFIG = "config"
    """``smoke_test.prompts`` in tuning.yaml."""
    VALIDATION = "validation"
    """The first held-out examples of the validation set."""
    DEFAULT = "default"
    """``smoke_test.default_prompt`` (neither of the above was available)."""


@dataclass(frozen=True)
class SmokePrompt:
    """One prompt to send, what to check, and the reference answer if known."""

    text: str
    """The (last) user message, for display."""
    contents: tuple[JSON, ...]
    checks: tuple[Check, ...]
    reference: str | None = None
    system_instruction: str | None = None


@dataclass(frozen=True)
class PromptSelection:
    """The chosen prompts and why (notes explain fallbacks)."""

    source: PromptSource
    prompts: tuple[SmokePrompt, ...]
    notes: tuple[str, ...] = ()


def _user_turn(text: str) -> JSON:
    return {"role": "user", "parts": [{"text": text}]}


def _texts(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return "".join(p["text"] for p in parts if isinstance(p, Mapping) and isinstance(p.get("text"), str))


def prompt_from_example(example: Mapping[str, Any]) -> SmokePrompt | None:
    """Split one SFT example into prompt (turns before the last model turn) and reference.

    Returns None when the example has no model turn with text after a user turn.

    >>> p = prompt_from_example({"contents": [{"role": "user", "parts": [{"text": "Q"}]},
    ...                                       {"role": "model", "parts": [{"text": "A"}]}]})
    >>> p.text, p.reference, len(p.contents)
    ('Q', 'A', 1)
    """
    contents = example.get("contents")
    if not isinstance(contents, list) or not contents:
        return None
    turns: list[JSON] = []
    for index, turn in enumerate(contents):
        if not isinstance(turn, Mapping):
            return None
        # A single-turn example may omit roles: they alternate starting with user.
        role = turn.get("role") or ("user" if index % 2 == 0 else "model")
        turns.append({"role": role, "parts": turn.get("parts", [])})
    last_model = max((i for i, t in enumerate(turns) if t["role"] == "model"), default=-1)
    if last_model < 1:
        return None
    reference = _texts(turns[last_model]["parts"])
    prompt_turns = turns[:last_model]
    if not reference or prompt_turns[-1]["role"] != "user":
        return None
    system = example.get("systemInstruction")
    system_text = _texts(system.get("parts")) if isinstance(system, Mapping) else ""
    return SmokePrompt(
        text=_texts(prompt_turns[-1]["parts"]),
        contents=tuple(prompt_turns),
        checks=(NonEmptyCheck(),),
        reference=reference,
        system_instruction=system_text or None,
    )


def validation_set_uri(record: JobRecord) -> str | None:
    """The validation set the intake resolved for this job (``gs://bucket/name``), if any."""
    nested = record.validation.validation_set if record.validation else None
    if isinstance(nested, Mapping) and isinstance(nested.get("uri"), str) and nested["uri"]:
        return str(nested["uri"])
    # ``validation_dataset`` is the config key (a ``validation_dataset_uri`` was never written).
    value = record.config.validation_dataset if record.config else None
    if isinstance(value, str) and value.startswith("gs://"):
        return value
    return None


def _split_gs_uri(uri: str) -> tuple[str, str, int | None]:
    path = uri.removeprefix("gs://")
    bucket, _, name = path.partition("/")
    generation: int | None = None
    if "#" in name:
        name, _, gen = name.partition("#")
        generation = int(gen) if gen.isdigit() else None
    return bucket, name, generation


def _read_examples(blobs: BlobStore, uri: str, limit: int) -> Iterator[Mapping[str, Any]]:
    """Stream the first ``limit`` usable examples (never reads the whole file)."""
    bucket, name, generation = _split_gs_uri(uri)
    found = 0
    with blobs.open_read(bucket, name, generation) as stream:
        for line in stream:
            if found >= limit:
                return
            stripped = line.strip()
            if not stripped:
                continue
            try:
                example = json.loads(stripped)
            except ValueError:
                continue
            if isinstance(example, Mapping):
                found += 1
                yield example


def select_prompts(options: SmokeTestOptions, *, validation_uri: str | None, blobs: BlobStore) -> PromptSelection:
    """Configured prompts, else validation examples, else the default prompt.

    Raises BlobReadError (retryable) when the validation set cannot be read right now; a
    missing validation set falls back to the default prompt with a note.
    """
    configured = [
        SmokePrompt(
            text=str(entry["prompt"]),
            contents=(_user_turn(str(entry["prompt"])),),
            checks=checks_from_config(entry),
            reference=str(entry["reference"]) if entry.get("reference") else None,
        )
        for entry in options.prompts
        if entry.get("prompt")
    ]
    if configured:
        return PromptSelection(PromptSource.CONFIG, tuple(configured))
    notes: list[str] = []
    if options.from_validation > 0 and validation_uri:
        try:
            examples = list(_read_examples(blobs, validation_uri, options.from_validation))
        except BlobNotFoundError:
            notes.append(f"validation set {validation_uri} not found; using the default prompt")
        else:
            prompts = [p for p in (prompt_from_example(e) for e in examples) if p is not None]
            if prompts:
                return PromptSelection(PromptSource.VALIDATION, tuple(prompts))
            notes.append(f"no usable example in the first lines of {validation_uri}; using the default prompt")
    elif options.from_validation > 0:
        notes.append("no validation set; using the default prompt")
    default = SmokePrompt(
        text=options.default_prompt,
        contents=(_user_turn(options.default_prompt),),
        checks=(NonEmptyCheck(),),
    )
    return PromptSelection(PromptSource.DEFAULT, (default,), tuple(notes))


# --- targets and calls -------------------------------------------------------------------------


class TargetRole(StrEnum):
    """What a smoke-test target is."""

    TUNED = "tuned"
    """The tuned model's endpoint (the verdict)."""
    CHECKPOINT = "checkpoint"
    """An exported intermediate checkpoint's endpoint (part of the verdict when tested)."""
    BASE = "base"
    """The base model, for comparison only (never part of the verdict)."""


@dataclass(frozen=True)
class SmokeTarget:
    """An endpoint (or base model name) to prompt."""

    role: TargetRole
    name: str
    label: str
    """Short display name: ``tuned``, ``checkpoint-2``, ``base``."""


def targets_for(record: JobRecord, options: SmokeTestOptions) -> tuple[list[SmokeTarget], list[str]]:
    """The tuned endpoint plus, with ``checkpoints: true``, every other checkpoint endpoint.

    Returns the targets and the problems found (no endpoint recorded = the test cannot pass).
    """
    tuning = record.tuning or TuningView()
    endpoint = tuning.endpoint
    if not isinstance(endpoint, str) or not endpoint:
        return [], ["no endpoint recorded for the tuned model"]
    targets = [SmokeTarget(TargetRole.TUNED, endpoint, "tuned")]
    if options.checkpoints:
        seen = {endpoint}
        for checkpoint in tuning.checkpoints or []:
            ckpt_endpoint = checkpoint.get("endpoint") if isinstance(checkpoint, Mapping) else None
            if isinstance(ckpt_endpoint, str) and ckpt_endpoint and ckpt_endpoint not in seen:
                seen.add(ckpt_endpoint)
                label = f"checkpoint-{checkpoint.get('checkpoint_id') or len(targets)}"
                targets.append(SmokeTarget(TargetRole.CHECKPOINT, ckpt_endpoint, label))
    return targets, []


def generate_with_retries(
    tuning: TuningBackend,
    target: str,
    request: GenerationRequest,
    *,
    retry: RetryPolicy,
    sleep: Sleep = time.sleep,
) -> tuple[GenerationResult, int, float]:
    """Call ``generate``; retry retryable errors with backoff.

    The only retry layer of a prompt (the adapter sends each generate call once), so a prompt
    costs at most ``retry.attempts`` calls per target, the bound the README states.

    Returns (result, attempts used, latency in seconds of the successful call). The last
    retryable error propagates once the attempts are used up; other errors propagate at once.
    """
    attempts = 0

    def attempt() -> tuple[GenerationResult, float]:
        nonlocal attempts
        attempts += 1
        started = time.perf_counter()
        result = tuning.generate(target, request)
        return result, time.perf_counter() - started

    result, elapsed = call_with_retries(attempt, retry=retry, sleep=sleep)
    return result, attempts, result.latency_seconds or elapsed


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptResult:
    """One prompt on one target."""

    index: int
    prompt: SmokePrompt
    target: SmokeTarget
    response: str = ""
    latency_seconds: float = 0.0
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    attempts: int = 0
    verdicts: tuple[CheckVerdict, ...] = ()
    error: JSON | None = None
    """``{code, message}`` when the call failed with a non-retryable error."""
    rouge: RougeScores | None = None

    @property
    def passed(self) -> bool:
        """No error and every check passed."""
        return self.error is None and all(v.passed for v in self.verdicts)

    def failure_reason(self) -> str:
        """One line naming the prompt, the target and what went wrong."""
        where = f"prompt {self.index + 1} on {self.target.label}"
        if self.error is not None:
            return f"{where}: call failed: {self.error['code']}: {self.error['message']}"
        failed = "; ".join(f"{v.kind}: {v.detail}" for v in self.verdicts if not v.passed)
        return f"{where}: {failed}"

    def to_dict(self, *, max_chars: int | None = MAX_STORED_CHARS) -> JSON:
        """The stored form (``max_chars=None`` keeps texts whole, for the report file)."""

        def cut(text: str | None) -> str | None:
            if text is None or max_chars is None or len(text) <= max_chars:
                return text
            return text[:max_chars] + "…"

        return {
            "index": self.index,
            "prompt": cut(self.prompt.text),
            "target": self.target.role.value,
            "label": self.target.label,
            "endpoint": self.target.name,
            "response": cut(self.response),
            "reference": cut(self.prompt.reference),
            "latency_seconds": round(self.latency_seconds, 3),
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "finish_reason": self.finish_reason,
            "attempts": self.attempts,
            "checks": [v.to_dict() for v in self.verdicts],
            "passed": self.passed,
            "error": self.error,
            "rouge": None if self.rouge is None else self.rouge.to_dict(),
        }


def run_prompt(
    index: int,
    prompt: SmokePrompt,
    target: SmokeTarget,
    *,
    tuning: TuningBackend,
    options: SmokeTestOptions,
    generation: GenerationSettings,
    retry: RetryPolicy,
    sleep: Sleep = time.sleep,
) -> PromptResult:
    """Send one prompt to one target and judge the answer.

    Non-retryable failures (NotFound endpoint, invalid request, permissions) become a failed
    result; retryable ones that outlast the retries propagate so the event is redelivered.
    """
    request = GenerationRequest(
        contents=[dict(turn) for turn in prompt.contents],
        system_instruction=prompt.system_instruction,
        temperature=0.0,
        max_output_tokens=generation.max_output_tokens,
        thinking_budget=generation.thinking_budget,
        thinking_level=generation.thinking_level,
        timeout_seconds=options.timeout_seconds,
    )
    try:
        result, attempts, latency = generate_with_retries(tuning, target.name, request, retry=retry, sleep=sleep)
    except Exception as exc:
        if is_retryable(exc):
            raise
        info = ErrorInfo.from_exception(exc)
        return PromptResult(index, prompt, target, attempts=1, error={"code": info.code, "message": info.message})
    text = result.text or ""
    return PromptResult(
        index=index,
        prompt=prompt,
        target=target,
        response=text,
        latency_seconds=latency,
        prompt_tokens=result.prompt_token_count,
        output_tokens=result.output_token_count,
        finish_reason=result.finish_reason,
        attempts=attempts,
        verdicts=tuple(evaluate_checks(prompt.checks, text)),
        rouge=rouge_scores(text, prompt.reference) if prompt.reference else None,
    )


@dataclass(frozen=True)
class SmokeTestResult:
    """The verdict over every prompt on every tested endpoint, plus optional base comparison."""

    selection: PromptSelection
    results: tuple[PromptResult, ...]
    """Tuned and checkpoint results (the verdict)."""
    base_results: tuple[PromptResult, ...] = ()
    base_model: str | None = None
    problems: tuple[str, ...] = ()
    """Failures that are not about one prompt (e.g. no endpoint recorded)."""
    unfinished: int = 0
    """Calls not made because the time budget ran out (0 = the test is complete)."""

    @property
    def passed(self) -> bool:
        """True when complete, something was tested, nothing failed, and every result passed."""
        return not self.unfinished and not self.problems and bool(self.results) and all(r.passed for r in self.results)

    def progress(self, max_chars: int = MAX_PROGRESS_CHARS) -> JSON:
        """The calls made so far, to resume from (``calls`` as :func:`call_record`; size-capped)."""
        calls: list[JSON] = []
        used = 0
        for result in (*self.results, *self.base_results):
            call = call_record(result)
            used += len(json.dumps(call))
            if used > max_chars:
                break
            calls.append(call)
        return {
            "calls": calls,
            "done": len(calls),
            "total": self.prompts_total + len(self.base_results) + self.unfinished,
        }

    @property
    def prompts_total(self) -> int:
        """Prompt x endpoint pairs judged."""
        return len(self.results)

    @property
    def prompts_passed(self) -> int:
        """How many of those passed."""
        return sum(1 for r in self.results if r.passed)

    @property
    def reasons(self) -> list[str]:
        """Why it failed (empty when it passed)."""
        return list(self.problems) + [r.failure_reason() for r in self.results if not r.passed]

    def scores(self) -> dict[str, RougeScores]:
        """Mean ROUGE per target label over the prompts that have a reference (base last)."""
        by_label: dict[str, list[RougeScores]] = {}
        for result in (*self.results, *self.base_results):
            if result.rouge is not None:
                by_label.setdefault(result.target.label, []).append(result.rouge)
        out: dict[str, RougeScores] = {}
        for label, values in by_label.items():
            mean = mean_scores(values)
            if mean is not None:
                out[label] = mean
        return out

    def scores_dict(self) -> dict[str, dict[str, float]] | None:
        """JSON form of :meth:`scores`, or None when no prompt had a reference."""
        scores = self.scores()
        return {label: s.to_dict() for label, s in scores.items()} or None


def call_key(target: SmokeTarget, index: int) -> str:
    """Identifies one call across invocations: ``tuned#0``, ``checkpoint-1#3``, ``base#2``."""
    return f"{target.label}#{index}"


def call_record(result: PromptResult) -> JSON:
    """What a finished call leaves for a later invocation (the checks are re-evaluated from it)."""
    return {
        "key": call_key(result.target, result.index),
        "response": result.response,
        "latency_seconds": result.latency_seconds,
        "prompt_tokens": result.prompt_tokens,
        "output_tokens": result.output_tokens,
        "finish_reason": result.finish_reason,
        "attempts": result.attempts,
        "error": result.error,
    }


def result_from_call(index: int, prompt: SmokePrompt, target: SmokeTarget, call: Mapping[str, Any]) -> PromptResult:
    """A call made by an earlier invocation, judged again (checks and ROUGE are pure)."""
    text = str(call.get("response") or "")
    error = call.get("error")
    return PromptResult(
        index=index,
        prompt=prompt,
        target=target,
        response=text,
        latency_seconds=float(call.get("latency_seconds") or 0.0),
        prompt_tokens=call.get("prompt_tokens"),
        output_tokens=call.get("output_tokens"),
        finish_reason=call.get("finish_reason"),
        attempts=int(call.get("attempts") or 0),
        verdicts=() if error else tuple(evaluate_checks(prompt.checks, text)),
        error=dict(error) if isinstance(error, Mapping) else None,
        rouge=rouge_scores(text, prompt.reference) if prompt.reference and not error else None,
    )


def run_smoke_test(
    record: JobRecord,
    *,
    options: SmokeTestOptions,
    tuning: TuningBackend,
    blobs: BlobStore,
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
    deadline: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    done: Mapping[str, Mapping[str, Any]] | None = None,
) -> SmokeTestResult:
    """Select prompts, run them on the tuned (and checkpoint) endpoints, optionally on the base.

    Time budget: with ``deadline`` (a ``monotonic()`` value), a call is only started while its
    worst case (every attempt timing out, plus backoff) still fits; the rest are counted in
    ``unfinished`` and the result is not a verdict. ``done`` holds calls an earlier invocation
    made (:func:`call_record` by :func:`call_key`): they are judged again, not sent again.

    Raises retryable errors (transient backend failures after retries, unreadable validation
    set) so the caller can release its claim and let the event be redelivered.
    """
    retry = retry or RetryPolicy()
    selection = select_prompts(options, validation_uri=validation_set_uri(record), blobs=blobs)
    targets, problems = targets_for(record, options)
    base_model = base_model_of(record) or ""
    generation = generation_settings(base_model, answer_tokens=options.max_output_tokens)
    plan = [(i, p, t) for t in targets for i, p in enumerate(selection.prompts)]
    if options.compare_base and base_model and targets:
        base_target = SmokeTarget(TargetRole.BASE, base_model, "base")
        plan += [(i, p, base_target) for i, p in enumerate(selection.prompts)]
    worst_call = retry.worst_case_seconds(options.timeout_seconds)
    results: list[PromptResult] = []
    base_results: list[PromptResult] = []
    unfinished = made = 0
    for i, p, t in plan:
        earlier = (done or {}).get(call_key(t, i))
        if earlier is not None:
            result = result_from_call(i, p, t, earlier)
        elif unfinished or (made and deadline is not None and deadline - monotonic() < worst_call):
            # Out of time (keep the order: every later call waits too). The first new call of an
            # invocation is always made, so every redelivery makes progress.
            unfinished += 1
            continue
        else:
            result = run_prompt(
                i, p, t, tuning=tuning, options=options, generation=generation, retry=retry, sleep=sleep
            )
            made += 1
        (base_results if t.role is TargetRole.BASE else results).append(result)
    return SmokeTestResult(
        selection=selection,
        results=tuple(results),
        base_results=tuple(base_results),
        base_model=base_model or None,
        problems=tuple(problems),
        unfinished=unfinished,
    )


def summary_reasons(result: SmokeTestResult, limit: int = 20) -> list[str]:
    """At most ``limit`` reasons, with a count of the rest (events stay small)."""
    reasons = result.reasons
    if len(reasons) <= limit:
        return reasons
    return [*reasons[:limit], f"... and {len(reasons) - limit} more"]
