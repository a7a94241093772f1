"""The README's main job: the whole pipeline on the embedded local stack, end to end.

:func:`run_demo` starts the local stack (emulators, the tuning server training SmolLM2 for
real, the four functions and their event wiring), uploads the bundled example datasets
(``support-bot`` v1 and v2 of one lineage, and the invalid ``broken-faq``), and narrates what
happens: validation verdicts, job states with training progress, events as they arrive,
smoke-test results and the retirement of the superseded model. It then copies the reports to
a local folder, prints a summary table and stops everything (unless ``keep``).

v2 is uploaded right after v1, so with the default quota of one concurrent tuning job it is
QUEUED first and submitted by the poller when v1 finishes - the same as on Vertex.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.local.stack import DEFAULT_MODEL_MAP, LocalStack, StackComponents
from shared.budget import cost_line, job_cost_summary
from shared.cli.jobs_cmd import cleanup_summary, training_progress
from shared.errors import NotFoundError, SftpilotError
from shared.ports import JobQuery
from shared.record_parts import part_dict
from shared.records import JobRecord
from shared.settings import Settings
from shared.states import JobStatus
from shared.wiring import Services

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "datasets"

Say = Callable[[str], None]


class DemoTimeoutError(SftpilotError):
    """The pipeline did not finish within the time limit."""

    code = "E_DEMO_TIMEOUT"

    def __init__(self, seconds: float, pending: list[str], logs: str) -> None:
        self.seconds = seconds
        self.pending = pending
        self.logs = logs
        super().__init__(f"not finished after {seconds:.0f}s; still waiting for: {', '.join(pending)}; logs in {logs}")


@dataclass(frozen=True)
class Upload:
    """One object the demo puts into the bucket (in this order)."""

    source: Path
    object_name: str
    triggers_job: bool
    after_job_started: str | None = None
    """Upload only once this object's tuning job exists (v2 arrives while v1 trains)."""


@dataclass(frozen=True)
class DemoOptions:
    """How to run the demo."""

    state_dir: Path = Path(".sftpilot/demo")
    model_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODEL_MAP))
    poll_interval: float = 3.0
    timeout_seconds: float = 900.0
    keep: bool = False
    tuning_yaml: Path | None = None
    """Replace the bundled support-bot tuning.yaml (tests use a lenient one with the tiny model)."""
    expect_smoke_pass: bool = True
    """SmolLM2 learns the support style, so its smoke tests pass and v1 is retired; the tiny
    model learns too little for that, so with it the demo only expects the tests to have run."""


@dataclass
class DemoResult:
    """What happened, for the summary table and for tests."""

    records: dict[str, JobRecord]
    """Object name -> final record."""
    events: list[dict[str, Any]]
    """Every sftpilot event seen: ``{"attributes": ..., "data": ...}``."""
    reports_dir: Path
    retired_models: list[str]
    elapsed_seconds: float

    expect_smoke_pass: bool = True

    def problems(self) -> list[str]:
        """Where the run differs from the story the demo tells (empty = everything as expected)."""
        by_name = {_short(name): record for name, record in self.records.items()}
        found = []
        expected = {
            "support-bot/v1.jsonl": JobStatus.SUCCEEDED,
            "support-bot/v2.jsonl": JobStatus.SUCCEEDED,
            "broken-faq/faq.jsonl": JobStatus.REJECTED,
        }
        for name, status in expected.items():
            record = by_name.get(name)
            if record is None or record.status is not status:
                ended = record.status.value if record else "without a record"
                found.append(f"{name} ended {ended}, expected {status.value}")
            elif status is JobStatus.SUCCEEDED:
                smoke = record.smoke_test
                if not smoke:
                    found.append(f"{name} has no smoke-test result")
                elif self.expect_smoke_pass and not smoke.passed:
                    found.append(f"{name} failed its smoke test: {'; '.join(smoke.reasons or [])[:300]}")
        v1 = by_name.get("support-bot/v1.jsonl")
        v1_model = v1.tuning.tuned_model if v1 and v1.tuning else None
        if self.expect_smoke_pass and v1_model and v1_model not in self.retired_models:
            found.append(f"v1's model {v1_model} was not retired after v2 passed")
        return found


def demo_uploads(prefix: str, tuning_yaml: Path | None) -> list[Upload]:
    """Configs and validation sets first (intake reads them), then the training files."""
    bot = EXAMPLES / "support-bot"
    return [
        Upload(tuning_yaml or bot / "tuning.yaml", f"{prefix}support-bot/tuning.yaml", triggers_job=False),
        Upload(bot / "v1.validation.jsonl", f"{prefix}support-bot/v1.validation.jsonl", triggers_job=False),
        Upload(bot / "v2.validation.jsonl", f"{prefix}support-bot/v2.validation.jsonl", triggers_job=False),
        Upload(bot / "v1.jsonl", f"{prefix}support-bot/v1.jsonl", triggers_job=True),
        Upload(EXAMPLES / "broken-faq" / "faq.jsonl", f"{prefix}broken-faq/faq.jsonl", triggers_job=True),
        Upload(
            bot / "v2.jsonl",
            f"{prefix}support-bot/v2.jsonl",
            triggers_job=True,
            after_job_started=f"{prefix}support-bot/v1.jsonl",
        ),
    ]


def error_summary(validation: Mapping[str, Any], shown: int = 4) -> str:
    """``5 error(s) of 2 kinds: E_A x3, E_B x2``; the list ends in ``…`` when it is cut.

    >>> error_summary({"error_counts": {"E_A": 2, "E_B": 1, "E_C": 1, "W_X": 9}}, shown=2)
    '4 error(s) of 3 kinds: E_A x2, E_B x1, … 1 more'
    """
    counts = {c: n for c, n in (validation.get("error_counts") or {}).items() if c.startswith("E_")}
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    listed = ", ".join(f"{code} x{n}" for code, n in ordered[:shown])
    if len(ordered) > shown:
        listed += f", … {len(ordered) - shown} more"
    kinds = f"{len(ordered)} kind{'s' if len(ordered) != 1 else ''}"
    return f"{sum(counts.values())} error(s) of {kinds}: {listed}"


def describe(record: JobRecord) -> str:
    """One narration line for a record's current state."""
    parts = [record.status.value]
    validation = record.validation
    if validation and record.status in (JobStatus.REJECTED, JobStatus.QUEUED, JobStatus.SUBMITTING):
        parts.append("valid" if validation.valid else "invalid: " + error_summary(validation.to_dict()))
    if record.status is JobStatus.RUNNING and (progress := training_progress(part_dict(record.tuning))):
        parts.append(progress)
    smoke = record.smoke_test
    if smoke:
        parts.append("smoke test " + ("PASSED" if smoke.passed else "FAILED"))
    if record.gate:
        parts.append(f"gate {record.gate.verdict}")
    if record.cleanup:
        parts.append("cleanup: " + cleanup_summary(record.cleanup))
    return "  ".join(parts)


def _finished(record: JobRecord) -> bool:
    # Every event committed with a transition must be published first (model.deleted is written
    # with the cleanup and published a moment later: without this the demo could stop before it).
    if not record.status.is_terminal or record.has_pending_outbox:
        return False
    if record.status is not JobStatus.SUCCEEDED:
        return True
    smoke = record.smoke_test
    if not smoke:
        return False
    if record.gate and record.gate.verdict in ("HELD", "REJECTED"):
        return not record.has_pending_outbox  # no promotion: no cleanup to wait for
    if smoke.passed and record.dataset.name.endswith("/v2.jsonl"):
        return bool(record.cleanup)
    return True


def run_demo(options: DemoOptions, say: Say = print) -> DemoResult:
    """Run the whole pipeline once; raises DemoTimeoutError if it does not finish in time."""
    started = time.monotonic()
    say(f"starting the local stack in {options.state_dir} (emulators, tuning server, functions) ...")
    stack = LocalStack(
        options.state_dir,
        components=StackComponents.FULL,
        poll_interval=options.poll_interval,
        model_map=options.model_map,
        on_progress=lambda message: say(f"  {message}"),
    )
    stack.start()
    dashboard = _start_dashboard(stack, say)
    try:
        result = _run(stack, options, say, started)
        if options.keep:
            say(f"dashboard: {dashboard.url}" if dashboard else "dashboard: run `sftpilot ui` from another shell")
            _serve_until_interrupted(options.state_dir, say)
        return result
    finally:
        say("stopping the local stack ...")
        if dashboard is not None:
            dashboard.close()
        stack.stop()


def _start_dashboard(stack: LocalStack, say: Say) -> Any:
    """The dashboard proxy for this stack (watch the jobs live while the demo runs), or None."""
    from shared.cli.ui_proxy import DashboardProxy, Target  # noqa: PLC0415

    env = stack.env()
    url, token = env.get("SFTPILOT_API_URL", ""), env.get("SFTPILOT_API_TOKEN", "")
    if not url or not token:
        return None
    try:
        proxy = DashboardProxy(Target(url, lambda: token, "local stack"), port=0).start()
    except OSError as exc:
        say(f"dashboard not started ({exc})")
        return None
    say(f"dashboard (live while the demo runs): {proxy.url}")
    return proxy


def explore_hint(state_dir: Path, cli: str | None = None) -> list[str]:
    """Commands that work pasted into a fresh shell, whether or not ``sftpilot`` is on the PATH.

    >>> for line in explore_hint(Path(".sftpilot/demo"), cli=".venv/bin/sftpilot"):
    ...     print(line)
    eval "$(.venv/bin/sftpilot local env --state-dir .sftpilot/demo)"
    .venv/bin/sftpilot jobs list
    (or: make shell, then plain sftpilot ...)
    """
    from shared.cli.common import cli_command  # noqa: PLC0415 - the CLI package imports this module lazily

    program = cli or cli_command()
    lines = [f'eval "$({program} local env --state-dir {state_dir})"', f"{program} jobs list"]
    if program != "sftpilot":
        lines.append("(or: make shell, then plain sftpilot ...)")
    return lines


def _serve_until_interrupted(state_dir: Path, say: Say) -> None:
    """Keep the stack (whose processes die with this one) up until Ctrl-C or SIGTERM."""
    say("the stack stays up until Ctrl-C; from another shell in this folder:")
    for line in explore_hint(state_dir):
        say(f"  {line}")

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(stack: LocalStack, options: DemoOptions, say: Say, started: float) -> DemoResult:
    import os  # noqa: PLC0415

    from google.cloud import pubsub_v1, storage  # noqa: PLC0415

    os.environ.update(stack.env())
    settings = Settings.from_env(stack.function_environment())
    services = Services(settings=settings)
    say("stack is up:")
    for name, value in sorted(stack.env().items()):
        say(f"  {name}={value}")

    subscriber = pubsub_v1.SubscriberClient()
    watch = stack.subscription_path("demo-watch-" + str(int(time.time())))
    subscriber.create_subscription(request={"name": watch, "topic": stack.events_topic_path})
    events: queue.Queue[dict[str, Any]] = queue.Queue()

    def on_event(message: Any) -> None:
        message.ack()
        try:
            data = json.loads(message.data)
        except ValueError:
            data = {}
        events.put({"attributes": dict(message.attributes), "data": data})

    stream = subscriber.subscribe(watch, on_event)
    bucket = storage.Client(project=stack.project).bucket(stack.bucket)
    uploads = demo_uploads(settings.datasets_prefix, options.tuning_yaml)

    def put(upload: Upload) -> None:
        bucket.blob(upload.object_name).upload_from_filename(str(upload.source))
        say(f"uploaded gs://{stack.bucket}/{upload.object_name}" + ("" if upload.triggers_job else "  (no trigger)"))

    waiting = [u for u in uploads if u.after_job_started]
    for upload in uploads:
        if not upload.after_job_started:
            put(upload)

    watched = {u.object_name for u in uploads if u.triggers_job}
    seen: list[dict[str, Any]] = []
    lines: dict[str, str] = {}
    records: dict[str, JobRecord] = {}
    deadline = time.monotonic() + options.timeout_seconds
    try:
        while True:
            page = services.jobs.query(JobQuery(limit=50))
            for record in page.records:
                if record.dataset.name not in watched:
                    continue
                records[record.dataset.name] = record
                line = describe(record)
                if lines.get(record.dataset.name) != line:
                    lines[record.dataset.name] = line
                    say(f"{_clock(started)}  {_short(record.dataset.name):<24} {line}")
            for upload in list(waiting):
                started_first = records.get(upload.after_job_started or "")
                if started_first is not None and started_first.tuning_job:
                    waiting.remove(upload)
                    put(upload)
            narrate_events(events, seen, say, started)
            done = len(records) == len(watched) and all(_finished(r) for r in records.values())
            if done:
                break
            if time.monotonic() > deadline:
                pending = sorted(_short(n) for n in watched if n not in records or not _finished(records[n]))
                raise DemoTimeoutError(options.timeout_seconds, pending, str(stack.state_dir / "logs"))
            time.sleep(1.0)
        # Events published just before the records looked finished are still on their way:
        # narrate until the subscription has been quiet for a moment (bounded).
        quiet_until = time.monotonic() + 2.0
        give_up = time.monotonic() + 15.0
        while time.monotonic() < min(quiet_until, give_up):
            if narrate_events(events, seen, say, started):
                quiet_until = time.monotonic() + 2.0
            time.sleep(0.2)
    finally:
        stream.cancel()
        with contextlib.suppress(Exception):
            stream.result(timeout=5)
        with contextlib.suppress(Exception):
            subscriber.delete_subscription(request={"subscription": watch})
        subscriber.close()

    reports_dir = run_reports_dir(options.state_dir)
    for record in records.values():  # only this run's reports, never an earlier run's
        folder = f"{settings.reports_prefix}{record.dataset.reports_prefix}/"
        for blob in bucket.list_blobs(prefix=folder):
            target = reports_dir / blob.name.removeprefix(settings.reports_prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target))
    retired = _retired_models(services, records)
    result = DemoResult(
        records=records,
        events=seen,
        reports_dir=reports_dir,
        retired_models=retired,
        elapsed_seconds=time.monotonic() - started,
        expect_smoke_pass=options.expect_smoke_pass,
    )
    for line in summary(result):
        say(line)
    return result


def run_reports_dir(state_dir: Path, now: float | None = None) -> Path:
    """``<state>/reports/run-YYYYmmdd-HHMMSS``: one folder per demo run (a new one if taken).

    >>> run_reports_dir(Path("/nonexistent/demo"), now=0.0).name
    'run-19700101-000000'
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    base = state_dir.resolve() / "reports" / f"run-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def narrate_events(events: queue.Queue[dict[str, Any]], seen: list[dict[str, Any]], say: Say, started: float) -> int:
    """Say one line per event waiting in ``events`` and move it to ``seen``; returns how many.

    The only place events are taken off the queue, so every event the demo counts is also told.
    """
    count = 0
    while True:
        try:
            event = events.get_nowait()
        except queue.Empty:
            return count
        seen.append(event)
        count += 1
        a = event["attributes"]
        say(f"{_clock(started)}  event {a.get('type', '?'):<18} {a.get('lineage', '')} {a.get('state', '')}".rstrip())


def _retired_models(services: Services, records: Mapping[str, JobRecord]) -> list[str]:
    """Tuned models of finished jobs that the tuning server no longer has."""
    gone = []
    for record in records.values():
        model = record.tuning.tuned_model if record.tuning else None
        if not model:
            continue
        try:
            services.tuning.get_model(model)
        except NotFoundError:
            gone.append(model)
    return gone


def summary(result: DemoResult) -> list[str]:
    """The closing table and where the reports are."""
    rows = [("DATASET", "STATUS", "SMOKE TEST", "GATE", "TUNED MODEL")]
    for name, record in sorted(result.records.items()):
        smoke = record.smoke_test
        verdict = "-" if not smoke else ("passed" if smoke.passed else "failed")
        gate = str((record.gate.verdict if record.gate else None) or "-")
        model = (record.tuning.tuned_model if record.tuning else None) or "-"
        if model in result.retired_models:
            model += " (retired)"
        rows.append((_short(name), record.status.value, verdict, gate, model.rsplit("/", 1)[-1]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["", "summary:"]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    for name, record in sorted(result.records.items()):
        if cost := job_cost_summary(record):
            out.append(f"  cost {_short(name):<24} {cost_line(cost)}")
    types = sorted({event["attributes"].get("type", "?") for event in result.events})
    out.append(f"  events seen: {len(result.events)} ({', '.join(types)})")
    out.append(f"  reports copied to {result.reports_dir}:")
    for path in sorted(result.reports_dir.rglob("*")):
        if path.is_file():
            out.append(f"    {path}")
    problems = result.problems()
    out.append(
        f"  finished in {result.elapsed_seconds:.0f}s: {'everything as expected' if not problems else 'UNEXPECTED:'}"
    )
    out += [f"    - {problem}" for problem in problems]
    return out


def _short(object_name: str) -> str:
    return "/".join(object_name.split("/")[-2:])


def _clock(started: float) -> str:
    elapsed = int(time.monotonic() - started)
    return f"[{elapsed // 60:02d}:{elapsed % 60:02d}]"
