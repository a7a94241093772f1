"""``sftpilot jobs list|show|cancel|watch``: query and operate job records through the jobs API."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from shared.api_client import ApiError, JobsClient
from shared.budget import cost_line, cost_summary
from shared.cli.common import EXIT_FAILED, EXIT_OK, friendly_errors, jobs_client, print_json, render_table
from shared.record_parts import CleanupRecord
from shared.states import COMPLETION_STATUSES, TERMINAL_STATUSES, JobStatus

_TERMINAL = {s.value for s in TERMINAL_STATUSES}


@click.group("jobs")
def jobs_group() -> None:
    """List, inspect, cancel and watch tuning jobs."""


@jobs_group.command("list")
@click.option("--state", help="Comma-separated statuses, e.g. RUNNING,QUEUED.")
@click.option("--lineage", help="Only this lineage.")
@click.option("--dataset", help="gs://bucket/object[#generation]")
@click.option("--since", help="RFC 3339; only jobs created at or after.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@friendly_errors
def list_jobs(
    state: str | None, lineage: str | None, dataset: str | None, since: str | None, limit: int, as_json: bool
) -> None:
    """Jobs, newest first."""
    client = jobs_client()
    jobs: list[dict[str, Any]] = []
    token = ""
    while len(jobs) < limit:
        page = client.list_jobs(
            state=state or "",
            lineage=lineage or "",
            dataset=dataset or "",
            since=since or "",
            limit=str(min(200, limit - len(jobs))),
            page_token=token,
        )
        jobs += page["jobs"]
        token = page.get("next_page_token") or ""
        if not token:
            break
    if as_json:
        print_json(jobs)
        return
    if not jobs:
        click.echo("no jobs")
        return
    rows = [
        [
            j["id"],
            j["status"],
            j["lineage"],
            j["dataset"].removeprefix("gs://"),
            j.get("smoke_test") or "-",
            j["updated_at"][:19].replace("T", " "),
        ]
        for j in jobs
    ]
    click.echo(render_table(["ID", "STATUS", "LINEAGE", "DATASET", "SMOKE", "UPDATED (UTC)"], rows))


@jobs_group.command("costs")
@click.option("--lineage", help="Only this lineage.")
@click.option("--month", help="Only this calendar month (UTC), YYYY-MM.")
@click.option("--limit", type=click.IntRange(1, 5000), default=1000, show_default=True, help="Jobs to read.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@friendly_errors
def job_costs(lineage: str | None, month: str | None, limit: int, as_json: bool) -> None:
    """Estimated vs actual tuning cost per lineage and month (from the jobs' records)."""
    client = jobs_client()
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    token, seen = "", 0
    while seen < limit:
        page = client.list_jobs(lineage=lineage or "", limit=str(min(200, limit - seen)), page_token=token)
        for job in page["jobs"]:
            key = (job["lineage"], str(job["created_at"])[:7])
            row = totals.setdefault(
                key, {"lineage": key[0], "month": key[1], "jobs": 0, "estimated_usd": 0.0, "actual_usd": 0.0}
            )
            cost = job.get("cost") or {}
            if cost.get("within_budget") is False:
                continue  # refused before submission: nothing was spent
            row["jobs"] += 1
            row["estimated_usd"] += float(cost.get("estimated_cost_usd") or 0.0)
            row["actual_usd"] += float(cost.get("actual_cost_usd") or 0.0)
        seen += len(page["jobs"])
        token = page.get("next_page_token") or ""
        if not token:
            break
    rows = [r for k, r in sorted(totals.items()) if not month or k[1] == month]
    if as_json:
        print_json(rows)
        return
    table = [
        [r["lineage"], r["month"], str(r["jobs"]), f"${r['estimated_usd']:,.2f}", f"${r['actual_usd']:,.2f}"]
        for r in rows
    ]
    click.echo(render_table(["LINEAGE", "MONTH", "JOBS", "ESTIMATED", "ACTUAL"], table) if rows else "no jobs")


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the full record as one JSON object.")
@friendly_errors
def show_job(job_id: str, as_json: bool) -> None:
    """A readable report of one job: validation, tuning, history, smoke test, cleanup."""
    record = jobs_client().get_job(job_id)
    if as_json:
        print_json(record)
        return
    click.echo(format_record(record))


@jobs_group.command("cancel")
@click.argument("job_id")
@friendly_errors
def cancel_job(job_id: str) -> None:
    """Cancel a queued or running job (the final state is recorded by the poller)."""
    result = jobs_client().cancel_job(job_id)
    job = result["job"]
    click.echo(f"{job['id']}: {job['status']} (cancel requested by {result['cancel_request']['by']})")


@jobs_group.command("watch")
@click.argument("job_id")
@click.option("--interval", type=click.FloatRange(0.2, 600), default=5.0, show_default=True)
@click.option("--timeout", type=click.FloatRange(1, None), default=None, help="Give up after this many seconds.")
@click.option(
    "--smoke-wait",
    type=click.FloatRange(0, None),
    default=300.0,
    show_default=True,
    help="After SUCCEEDED, wait this long for the smoke-test result.",
)
@click.option(
    "--appear-wait",
    type=click.FloatRange(0, None),
    default=120.0,
    show_default=True,
    help="How long to wait for the job record to appear (the upload trigger creates it a moment after the upload).",
)
@click.option("--json", "as_json", is_flag=True, help="Progress on stderr, the final record as JSON on stdout.")
@friendly_errors
def watch_job(
    job_id: str, interval: float, timeout: float | None, smoke_wait: float, appear_wait: float, as_json: bool
) -> None:
    """Follow a job until it ends (and its smoke test is recorded). Exit 0 only if it succeeded."""
    client = jobs_client()
    started = time.monotonic()
    ended_at: float | None = None
    last_line = ""
    record = wait_for_record(client, job_id, appear_wait, min(interval, 1.0))
    while True:
        record = record or client.get_job(job_id)
        line = progress_line(record)
        if line != last_line:
            click.echo(f"{time.strftime('%H:%M:%S')}  {line}", err=as_json)
            last_line = line
        status = record["status"]
        now = time.monotonic()
        if status in _TERMINAL:
            ended_at = ended_at or now
            smoke_pending = status == JobStatus.SUCCEEDED.value and not record.get("smoke_test")
            if not smoke_pending or now - ended_at > smoke_wait:
                break
        if timeout is not None and now - started > timeout:
            click.echo(f"timed out after {timeout:.0f}s; job is {status}", err=True)
            sys.exit(EXIT_FAILED)
        time.sleep(interval)
        record = None
    if as_json:
        print_json(record)
    else:
        click.echo(format_record(record))
    succeeded = record["status"] == JobStatus.SUCCEEDED.value
    sys.exit(EXIT_OK if succeeded else EXIT_FAILED)


def wait_for_record(
    client: JobsClient,
    job_id: str,
    wait_seconds: float,
    interval: float,
    sleep: Any = time.sleep,
    clock: Any = time.monotonic,
) -> dict[str, Any] | None:
    """The record once it exists; waits up to ``wait_seconds`` while the API says 404.

    The record is created by the upload trigger, a moment after the upload (on GCP, after
    Eventarc's delivery delay), so ``sftpilot upload`` followed at once by ``jobs watch`` must
    not fail. Any other error (malformed id, auth) is raised at once; a record that never
    appears ends with the API's 404 and a line saying how long we waited.
    """
    deadline = clock() + wait_seconds
    told = False
    while True:
        try:
            record: dict[str, Any] = client.get_job(job_id)
            return record
        except ApiError as exc:
            if exc.status != 404:
                raise
            if clock() >= deadline:
                if told or wait_seconds > 0:
                    click.echo(f"no job record {job_id} after waiting {wait_seconds:.0f}s", err=True)
                raise
        if not told:
            click.echo(f"waiting for the job record {job_id} to appear (up to {wait_seconds:.0f}s) ...", err=True)
            told = True
        sleep(interval)


def training_progress(tuning: dict[str, Any] | None) -> str:
    """``step 12/51  loss 1.234`` from a record's tuning view (empty when unknown).

    The view's ``metrics`` are ``{completed_steps, total_steps, latest: {train_total_loss, ...}}``.

    >>> training_progress({"metrics": {"completed_steps": 3, "total_steps": 9,
    ...     "latest": {"train_total_loss": 1.23456}}})
    'step 3/9  loss 1.235'
    """
    metrics = (tuning or {}).get("metrics") or {}
    latest = metrics.get("latest") or {}
    parts = []
    step, total = metrics.get("completed_steps", latest.get("step")), metrics.get("total_steps")
    if step is not None:
        parts.append(f"step {step}/{total}" if total else f"step {step}")
    loss = latest.get("train_total_loss")
    if isinstance(loss, (int, float)):
        parts.append(f"loss {loss:.3f}")
    return "  ".join(parts)


def progress_line(record: dict[str, Any]) -> str:
    """One line: status, training progress while running, smoke verdict when known.

    >>> progress_line({"status": "RUNNING", "tuning": {"metrics": {"completed_steps": 3, "total_steps": 9}}})
    'RUNNING  step 3/9'
    """
    parts = [record["status"]]
    if record["status"] == JobStatus.RUNNING.value and (progress := training_progress(record.get("tuning"))):
        parts.append(progress)
    smoke = record.get("smoke_test")
    if smoke:
        parts.append("smoke test " + ("PASSED" if smoke.get("passed") else "FAILED"))
    return "  ".join(parts)


def format_record(record: dict[str, Any]) -> str:
    """The human report printed by ``jobs show`` and at the end of ``jobs watch``."""
    tuning = record.get("tuning") or {}
    config = record.get("config") or {}
    lines = [
        f"Job {record['id']}  {record['status']}",
        f"  dataset     {record['dataset']}",
        f"  lineage     {record['lineage']}",
        f"  created     {record['created_at']}",
    ]
    if config:
        lines.append(
            f"  config      base {config.get('base_model')}, epochs {config.get('epochs') or 'auto'}, "
            f"adapter {config.get('adapter_size') or 'auto'}"
        )
    if record.get("tuning_job"):
        lines.append(f"  tuning job  {record['tuning_job']}")
    if record["status"] == JobStatus.QUEUED.value:
        lines.append("  waiting     for quota (not submitted yet; sftpilot submits it when a slot frees)")
    elif tuning.get("waiting_for_quota") and not JobStatus(record["status"]).is_terminal:
        lines.append("  waiting     for quota (Vertex accepted the job and holds it until a slot frees)")
    if tuning.get("tuned_model"):
        lines.append(f"  model       {tuning['tuned_model']}")
        lines.append(f"  endpoint    {tuning.get('endpoint')}")
    validation = record.get("validation") or {}
    if validation:
        counts = validation.get("error_counts") or {}
        errors = sum(n for c, n in counts.items() if c.startswith("E_"))
        warnings = sum(n for c, n in counts.items() if c.startswith("W_"))
        verdict = "valid" if validation.get("valid") else "INVALID"
        lines.append(f"Validation: {verdict}, {errors} error(s), {warnings} warning(s)")
        if validation.get("report_uri"):
            lines.append(f"  report      {validation['report_uri']}")
        for issue in (validation.get("issues") or [])[:10]:
            where = f"line {issue.get('line')}" if issue.get("line") else "file"
            lines.append(
                f"  {issue['severity']:<7} {where} {issue.get('path', '')}: {issue['code']} {issue['message']}"
            )
    if record.get("error"):
        error = record["error"]
        lines.append(f"Error: {error.get('code', '')} {error.get('message', error)}")
    if progress := training_progress(tuning):
        lines.append(f"Training: {progress}")
    lines.append("History:")
    for entry in record.get("history", []):
        lines.append(f"  {entry['at'][:19].replace('T', ' ')}  {entry['status']:<16} {entry.get('note', '')}".rstrip())
    smoke = record.get("smoke_test")
    if smoke:
        verdict = "PASSED" if smoke.get("passed") else "FAILED"
        if smoke.get("skipped"):  # smoke_test.enabled: false (shared.completion)
            verdict = f"skipped ({smoke['skipped']})"
        prompts = smoke.get("prompts") or []
        passed = sum(1 for p in prompts if all(c.get("passed") for c in p.get("checks", [])))
        lines.append(f"Smoke test: {verdict} ({passed}/{len(prompts)} prompts)")
        for reason in smoke.get("reasons") or []:
            lines.append(f"  - {reason}")
        for prompt in prompts[:5]:
            mark = "ok " if all(c.get("passed") for c in prompt.get("checks", [])) else "BAD"
            answer = " ".join(str(prompt.get("response", "")).split())[:70]
            lines.append(f"  [{mark}] {str(prompt.get('prompt', ''))[:40]!r} -> {answer!r}")
        lines += rouge_lines(smoke.get("scores"))
        if smoke.get("report_uri"):
            lines.append(f"  report      {smoke['report_uri']}")
        if smoke.get("chart_uri"):
            lines.append(f"  chart       {smoke['chart_uri']}")
    # The API's JSON: the intake's check is validation.cost, the actual is cost.actual.
    if summary := cost_summary((record.get("validation") or {}).get("cost"), (record.get("cost") or {}).get("actual")):
        lines.append(f"Cost: {cost_line(summary)}")
    if record.get("gate"):
        lines.extend(gate_lines(record["gate"]))
    cleanup = record.get("cleanup")
    if cleanup:
        lines.append(f"Cleanup: {cleanup_summary(CleanupRecord.from_dict(cleanup))}")
    if record["status"] in {s.value for s in COMPLETION_STATUSES} and record.get("cancel_request"):
        req = record["cancel_request"]
        lines.append(f"Cancel requested by {req.get('by')} at {req.get('at')}")
    return "\n".join(lines)


def rouge_lines(scores: dict[str, dict[str, float]] | None) -> list[str]:
    """The smoke test's mean ROUGE per target, as ``jobs show`` prints it (empty when none).

    >>> rouge_lines({"tuned": {"rouge1": 0.61, "rouge2": 0.4, "rougeL": 0.5}})
    ['  ROUGE (mean F)  R-1    R-2    R-L', '    tuned         0.610  0.400  0.500']
    """
    if not scores:
        return []
    lines = ["  ROUGE (mean F)  R-1    R-2    R-L"]
    for label, values in scores.items():
        cells = "  ".join(f"{values.get(m, float('nan')):.3f}" for m in ("rouge1", "rouge2", "rougeL"))
        lines.append(f"    {label:<13} {cells}")
    return lines


def gate_lines(gate: dict[str, Any], max_prompts: int = 10) -> list[str]:
    """The quality gate's verdict, one line per comparison and its per-prompt table.

    >>> gate_lines({"verdict": "HELD", "reason": "r", "metric": "rougeL", "comparisons": []})
    ['Gate: HELD (rougeL): r']
    """
    if gate.get("verdict"):
        lines = [f"Gate: {gate.get('verdict')} ({gate.get('metric')}): {gate.get('reason')}"]
    else:
        lines = ["Gate: no verdict (gate.enabled is false)"]
    lines.extend(checkpoint_lines(gate.get("checkpoints") or {}))
    for c in gate.get("comparisons") or []:
        lines.append(
            f"  vs {c['against']:<5} new {c['new_mean']:.3f} old {c['old_mean']:.3f} "
            f"delta {c['delta']:+.3f} interval [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]  "
            f"{c['wins']} win(s) {c['losses']} loss(es) {c['ties']} tie(s) -> {c['verdict']}"
        )
        for row in (c.get("prompts") or [])[:max_prompts]:
            lines.append(f"    {row['outcome']:<4} {row['new']:.3f} vs {row['old']:.3f}  {str(row['prompt'])[:50]!r}")
    for note in gate.get("notes") or []:
        lines.append(f"  note: {note}")
    if gate.get("report_uri"):
        lines.append(f"  report      {gate['report_uri']}")
    return lines


def checkpoint_lines(choice: dict[str, Any]) -> list[str]:
    """The best-checkpoint choice (``gate.best_checkpoint``): the winner and every checkpoint's score.

    >>> rows = [{"checkpoint_id": "1", "epoch": 1, "score": 0.4}, {"checkpoint_id": "2", "epoch": 2, "score": 0.6}]
    >>> choice = {"metric": "rougeL", "reason": "r", "best": {"checkpoint_id": "2"}, "scores": rows}
    >>> print("\\n".join(checkpoint_lines(choice)))
      best checkpoint 2: r
        checkpoint 1    epoch 1  rougeL 0.400
      * checkpoint 2    epoch 2  rougeL 0.600
    """
    if not choice:
        return []
    best = (choice.get("best") or {}).get("checkpoint_id")
    lines = [f"  best checkpoint {best or '-'}: {choice.get('reason')}"]
    if choice.get("error"):
        lines.append(f"  default checkpoint not set: {choice['error']}")
    for row in choice.get("scores") or []:
        mark = "*" if row.get("checkpoint_id") == best else " "
        lines.append(
            f"  {mark} checkpoint {row.get('checkpoint_id')!s:<4} epoch {row.get('epoch')}  "
            f"{choice.get('metric')} {float(row.get('score') or 0):.3f}"
        )
    return lines


def cleanup_summary(cleanup: CleanupRecord) -> str:
    """One line for ``record.cleanup`` (the CLI reads it from the API's JSON, the demo from the record)."""
    if cleanup.skipped:
        return f"skipped ({cleanup.skipped})"
    if cleanup.retired_by:
        return f"this job's model was retired by {cleanup.retired_by}"
    # shared.cleanup stores the run this job triggered under "run" (targets with a status each);
    # "dry_run", "retired" and "models" were never keys of the cleanup part itself.
    run = cleanup.run or {}
    targets = run.get("targets") or []
    if run.get("dry_run"):
        would = [t for t in targets if t.get("status") == "would_retire"]
        return f"dry run: {len(would)} superseded model(s) would be retired (nothing deleted)"
    retired = run.get("retired_models") or []
    refused = [t for t in targets if t.get("status") in {"not_managed", "failed"}]
    extra = f", {len(refused)} left alone (not ours or failed)" if refused else ""
    pending = [t for t in targets if t.get("status") == "pending"]
    if pending:
        extra += f", {len(pending)} pending (Vertex operations still running; resumed automatically)"
    return f"{len(retired)} superseded model(s) retired{extra}"
