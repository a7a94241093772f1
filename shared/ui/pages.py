"""HTML of the dashboard pages. Every value from a record goes through :func:`esc`.

Links are relative (``base`` is the way back to ``/ui/``), so the pages work behind any path
prefix (a Cloud Functions URL ``.../jobs_api/ui/``, the local proxy, Cloud Run's root).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from shared.curves import series_points
from shared.record_parts import CleanupRecord, RecordError, ResolvedConfig, SmokeTestRecord, TuningView, Validation
from shared.records import JobRecord, from_rfc3339, to_rfc3339
from shared.states import JobStatus
from shared.ui.charts import bar_chart, line_chart

STATUS_COLOURS: dict[str, str] = {
    "RECEIVED": "grey",
    "VALIDATING": "grey",
    "REJECTED": "red",
    "QUEUED": "amber",
    "SUBMITTING": "amber",
    "PENDING": "amber",
    "RUNNING": "blue",
    "CANCELLING": "amber",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "FAILED_TO_SUBMIT": "red",
    "CANCELLED": "grey",
    "EXPIRED": "red",
    "VANISHED": "red",
}
"""Status -> CSS colour class (the text is always shown too: colour is never the only signal)."""

LOSS_SERIES = ("train_total_loss", "eval_total_loss")
ACCURACY_SERIES = ("train_fraction_of_correct_next_step_preds", "eval_fraction_of_correct_next_step_preds")


def esc(value: Any) -> str:
    """Text for HTML (element content and quoted attributes); None shows as an en dash."""
    if value is None or value == "":
        return "–"
    return escape(str(value), quote=True)


def page(title: str, body: str, *, base: str, live: str = "", stamp: str = "") -> str:
    """A whole document: no external asset, the stylesheet and script come from ``/ui/static``.

    ``live`` (relative URL of a JSON state endpoint) makes the page refresh itself while the
    state's ``updated_at|status`` differs from ``stamp``.
    """
    live_attr = f' data-live="{esc(live)}" data-stamp="{esc(stamp)}"' if live else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · sftpilot</title>"
        f'<link rel="stylesheet" href="{base}static/app.css">'
        f'<script src="{base}static/live.js" defer></script>'
        "</head><body>"
        f'<header><a class="brand" href="{base}">sftpilot</a> <span class="crumb">{esc(title)}</span></header>'
        f'<main id="main"{live_attr}>{body}</main>'
        "</body></html>\n"
    )


def badge(status: str) -> str:
    """Status colour + text."""
    return f'<span class="badge {STATUS_COLOURS.get(status, "grey")}" data-status="{esc(status)}">{esc(status)}</span>'


def fmt_time(value: Any) -> str:
    """``2026-12-04 16:03:05 UTC`` (seconds are enough for people)."""
    try:
        moment = from_rfc3339(value)
    except (TypeError, ValueError):
        return esc(value)
    if moment is None:
        return "–"
    return esc(moment.strftime("%Y-%m-%d %H:%M:%S UTC"))


def fmt_duration(start: datetime | None, end: datetime | None) -> str:
    """``1h 02m``, ``3m 05s``, ``12s``; ``–`` when unknown."""
    if start is None or end is None:
        return "–"
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def duration(record: JobRecord, now: datetime) -> str:
    """Tuning time when known (start to end, or to now while running), else upload to last change."""
    view = record.tuning or TuningView()
    start = _time(view.start_time)
    end = _time(view.end_time)
    if start is not None:
        return fmt_duration(start, end or (now if not record.status.is_terminal else record.updated_at))
    return fmt_duration(record.created_at, record.updated_at if record.status.is_terminal else now)


def estimated_tokens(record: JobRecord) -> int | None:
    """Billable tokens (dataset tokens x epochs) as the validator estimated them."""
    stats = (record.validation.stats if record.validation else None) or {}
    billing = stats.get("billing") or {}
    value = billing.get("estimated_billable_tokens") or billing.get("dataset_tokens")
    return value if isinstance(value, int) else None


def smoke_verdict(record: JobRecord) -> str:
    """``passed`` / ``failed`` / ``skipped`` / ``–``."""
    smoke = record.smoke_test
    if smoke is None:
        return "–"
    if smoke.skipped:
        return "skipped"
    return "passed" if smoke.passed else "failed"


def base_model(record: JobRecord) -> str | None:
    """The configured base model (resolved config first, then the tuning job's)."""
    value = (record.config.base_model if record.config else None) or (
        record.tuning.base_model if record.tuning else None
    )
    return str(value) if value else None


def is_retired(record: JobRecord) -> bool:
    """True once a newer job's cleanup retired this job's model."""
    cleanup = record.cleanup or CleanupRecord()
    return bool(cleanup.retired_by) or (cleanup.retirement or {}).get("status") == "retired"


def _time(value: Any) -> datetime | None:
    try:
        return from_rfc3339(value)
    except (TypeError, ValueError):
        return None


def _verdict_badge(verdict: str) -> str:
    colour = {"passed": "green", "failed": "red", "skipped": "grey"}.get(verdict, "grey")
    return f'<span class="badge {colour}">{esc(verdict)}</span>' if verdict != "–" else "–"


# --- /ui/ ------------------------------------------------------------------------------------


def jobs_page(
    records: Iterable[JobRecord],
    *,
    filters: Mapping[str, str],
    next_token: str | None,
    now: datetime,
    error: str = "",
) -> str:
    """All jobs, newest first, with the filter form and the next-page link."""
    base = ""
    options = ['<option value="">any status</option>'] + [
        f'<option value="{s.value}"{" selected" if filters.get("state") == s.value else ""}>{s.value}</option>'
        for s in JobStatus
    ]
    form = (
        '<form class="filters" method="get" action="">'
        f'<label>Lineage <input name="lineage" value="{esc(filters.get("lineage", "")).replace("–", "")}"></label> '
        f'<label>Status <select name="state">{"".join(options)}</select></label> '
        '<button type="submit">Filter</button></form>'
    )
    rows = []
    for record in records:
        rows.append(
            f'<tr data-job="{esc(record.id)}">'
            f"<td>{badge(record.status.value)}</td>"
            f'<td><a href="{base}lineages/{quote(record.lineage)}">{esc(record.lineage)}</a></td>'
            f'<td><a href="{base}jobs/{quote(record.id)}">{esc(record.dataset.name.rsplit("/", 1)[-1])}</a>'
            f' <span class="muted">#{esc(record.dataset.generation)}</span></td>'
            f"<td>{esc(base_model(record))}</td>"
            f"<td>{fmt_time(record.created_at.isoformat())}</td>"
            f"<td>{esc(duration(record, now))}</td>"
            f'<td class="num">{_num(estimated_tokens(record))}</td>'
            f"<td>{_verdict_badge(smoke_verdict(record))}</td>"
            "</tr>"
        )
    table = (
        '<table class="jobs"><thead><tr><th>Status</th><th>Lineage</th><th>Dataset</th><th>Base model</th>'
        "<th>Created</th><th>Duration</th><th>Est. tokens</th><th>Smoke test</th></tr></thead>"
        f"<tbody>{''.join(rows) or '<tr><td colspan=8>No jobs match.</td></tr>'}</tbody></table>"
    )
    pager = ""
    if next_token:
        params = {k: v for k, v in filters.items() if k in {"lineage", "state"} and v}
        params["page_token"] = next_token
        pager = f'<p class="pager"><a rel="next" href="?{esc(urlencode(params))}">Next page →</a></p>'
    problem = f'<p class="error">{esc(error)}</p>' if error else ""
    return page("Jobs", f"<h1>Jobs</h1>{form}{problem}{table}{pager}", base=base)


def _num(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


# --- /ui/jobs/{id} ------------------------------------------------------------------------------


def job_page(record: JobRecord, *, csrf_token: str, can_cancel: bool, cancellable: bool, now: datetime) -> str:
    """One job: timeline, validation, config, tuning job, curves, checkpoints, smoke test, events."""
    base = "../"
    view = record.tuning
    sections = [
        f"<h1>{esc(record.dataset.name.rsplit('/', 1)[-1])} {badge(record.status.value)}</h1>",
        '<dl class="facts">'
        f"<dt>Job id</dt><dd><code>{esc(record.id)}</code></dd>"
        f'<dt>Lineage</dt><dd><a href="{base}lineages/{quote(record.lineage)}">{esc(record.lineage)}</a></dd>'
        f"<dt>Dataset</dt><dd><code>{esc(record.dataset.uri)}</code></dd>"
        f"<dt>Base model</dt><dd>{esc(base_model(record))}</dd>"
        f"<dt>Created</dt><dd>{fmt_time(record.created_at.isoformat())}</dd>"
        f"<dt>Duration</dt><dd>{esc(duration(record, now))}</dd>"
        f"<dt>Estimated tokens</dt><dd>{_num(estimated_tokens(record))}</dd>"
        f"<dt>Smoke test</dt><dd>{_verdict_badge(smoke_verdict(record))}</dd>"
        "</dl>",
        _cancel_section(record, csrf_token=csrf_token, can_cancel=can_cancel, cancellable=cancellable),
        _error_section(record.error),
        _timeline(record),
        _validation_section(record.validation),
        _tuning_section(record, view),
        _curves_section(record, view),
        _checkpoints_section(view),
        _smoke_section(record.smoke_test),
        _events_section(record),
        _config_section(record.config),
    ]
    live = "" if record.status.is_terminal and not _awaits_smoke_test(record) else f"{quote(record.id)}/live.json"
    return page(f"Job {record.id[:8]}", "".join(sections), base=base, live=live, stamp=live_stamp(record))


def live_stamp(record: JobRecord) -> str:
    """What the live script compares: it changes whenever the record is written."""
    return f"{to_rfc3339(record.updated_at)}|{record.status.value}"


def _awaits_smoke_test(record: JobRecord) -> bool:
    return record.status is JobStatus.SUCCEEDED and not record.smoke_test


def _cancel_section(record: JobRecord, *, csrf_token: str, can_cancel: bool, cancellable: bool) -> str:
    if not cancellable:
        return ""
    if not can_cancel:
        return '<p class="muted">You may not cancel jobs (not on SFTPILOT_API_CANCEL_PRINCIPALS).</p>'
    return (
        f'<form class="cancel" method="post" action="{quote(record.id)}/cancel">'
        f'<input type="hidden" name="csrf_token" value="{esc(csrf_token)}">'
        f'<button type="submit" class="danger">Cancel job</button></form>'
    )


def _error_section(error: RecordError | None) -> str:
    if error is None:
        return ""
    return (
        f'<section class="error-box"><h2>Error</h2><p><code>{esc(error.code)}</code> {esc(error.message)}</p></section>'
    )


def _timeline(record: JobRecord) -> str:
    items = [
        f'<li><span class="when">{fmt_time(entry.at.isoformat())}</span> {badge(entry.status.value)} '
        f'<span class="note">{esc(entry.note) if entry.note else ""}</span></li>'
        for entry in record.history
    ]
    smoke = record.smoke_test
    if smoke is not None and smoke.tested_at:
        items.append(
            f'<li><span class="when">{fmt_time(smoke.tested_at)}</span> '
            f"{_verdict_badge(smoke_verdict(record))} <span class=note>smoke-tested</span></li>"
        )
    cleanup = record.cleanup or CleanupRecord()
    retirement = cleanup.retirement or {}
    if retirement.get("at"):
        items.append(
            f'<li><span class="when">{fmt_time(retirement["at"])}</span> <span class="badge grey">RETIRED</span> '
            f'<span class="note">model {esc(retirement.get("model"))} retired by job '
            f"{esc(cleanup.retired_by)}</span></li>"
        )
    received = (
        f'<li><span class="when">{fmt_time(record.created_at.isoformat())}</span> '
        '<span class="badge grey">RECEIVED</span> <span class="note">dataset uploaded</span></li>'
    )
    return f'<section><h2>Timeline</h2><ol class="timeline">{received}{"".join(items)}</ol></section>'


def _validation_section(validation: Validation | None) -> str:
    if validation is None:
        return '<section><h2>Validation</h2><p class="muted">Not validated yet.</p></section>'
    verdict = '<span class="badge green">valid</span>' if validation.valid else '<span class="badge red">invalid</span>'
    facts = (
        f"<dt>Verdict</dt><dd>{verdict} {esc(validation.reason) if validation.reason else ''}</dd>"
        f"<dt>Examples</dt><dd>{esc(validation.example_count)}</dd>"
        f"<dt>Errors / warnings</dt><dd>{esc(validation.errors_count)} / "
        f"{esc(validation.warnings_count)}</dd>"
        f"<dt>Report</dt><dd><code>{esc(validation.report_uri)}</code></dd>"
    )
    validation_set = validation.validation_set or {}
    if validation_set:
        facts += (
            f"<dt>Validation set</dt><dd><code>{esc(validation_set.get('uri'))}</code> "
            f"({esc(validation_set.get('example_count'))} examples, "
            f"{'valid' if validation_set.get('valid') else 'invalid'})</dd>"
        )
    issues = list(validation.issues or [])[:10]
    rows = "".join(
        f"<tr><td>{esc(issue.get('line'))}</td><td>{esc(issue.get('severity'))}</td>"
        f"<td><code>{esc(issue.get('code'))}</code></td><td><code>{esc(issue.get('path'))}</code></td>"
        f"<td>{esc(issue.get('message'))}</td><td>{esc(issue.get('fix'))}</td></tr>"
        for issue in issues
        if isinstance(issue, dict)
    )
    table = (
        '<table class="issues"><thead><tr><th>Line</th><th>Severity</th><th>Code</th><th>Path</th><th>Message</th>'
        f"<th>Fix</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p class="muted">No issues.</p>'
    )
    return f'<section><h2>Validation</h2><dl class="facts">{facts}</dl><h3>First issues</h3>{table}</section>'


def console_links(name: str | None) -> str:
    """Links to the Vertex AI console pages of a tuning job / model / endpoint resource name.

    Console URL patterns as the console shows them (tuning job monitor page under Vertex AI
    Studio tuning; Model Registry; online prediction endpoints). Local names link nowhere useful
    but are shown the same way.
    """
    if not name:
        return "–"
    parts = name.split("/")
    if len(parts) < 6 or parts[0] != "projects" or parts[2] != "locations":
        return f"<code>{esc(name)}</code>"
    project, location, kind, ident = parts[1], parts[3], parts[4], parts[5].split("@")[0]
    query = f"?project={quote(project)}"
    paths = {
        "tuningJobs": (
            f"vertex-ai/generative/language/locations/{quote(location)}/tuning/tuningJob/{quote(ident)}/monitor"
        ),
        "models": f"vertex-ai/models/locations/{quote(location)}/models/{quote(ident)}",
        "endpoints": f"vertex-ai/locations/{quote(location)}/endpoints/{quote(ident)}",
    }
    path = paths.get(kind)
    if path is None:
        return f"<code>{esc(name)}</code>"
    url = f"https://console.cloud.google.com/{path}{query}"
    return f'<code>{esc(name)}</code> <a class="console" href="{esc(url)}" rel="noopener noreferrer">console ↗</a>'


def _tuning_section(record: JobRecord, stored: TuningView | None) -> str:
    if not record.tuning_job and stored is None:
        return '<section><h2>Tuning job</h2><p class="muted">Not submitted yet.</p></section>'
    view = stored or TuningView()
    metrics = view.metrics or {}
    progress = ""
    if metrics.get("completed_steps") is not None:
        total = metrics.get("total_steps")
        progress = f"{esc(metrics.get('completed_steps'))}" + (f" / {esc(total)}" if total else "") + " steps"
    error = view.error or {}
    facts = (
        f"<dt>Tuning job</dt><dd>{console_links(record.tuning_job)}</dd>"
        f"<dt>State</dt><dd>{esc(view.state)}</dd>"
        f"<dt>Progress</dt><dd>{progress or '–'}</dd>"
        f"<dt>Started</dt><dd>{fmt_time(view.start_time)}</dd>"
        f"<dt>Ended</dt><dd>{fmt_time(view.end_time)}</dd>"
        f"<dt>Tuned model</dt><dd>{console_links(view.tuned_model)}</dd>"
        f"<dt>Endpoint</dt><dd>{console_links(view.endpoint)}</dd>"
    )
    if error:
        facts += f"<dt>Backend error</dt><dd>{esc(error.get('code'))}: {esc(error.get('message'))}</dd>"
    return f'<section><h2>Tuning job</h2><dl class="facts">{facts}</dl></section>'


def _curves_section(record: JobRecord, view: TuningView | None) -> str:
    curves = (view.curves if view else None) or {}
    series = curves.get("series") or {}
    if not series:
        if record.status in (JobStatus.QUEUED, JobStatus.PENDING, JobStatus.SUBMITTING, JobStatus.RECEIVED):
            message = "Training has not started yet."
        elif not record.tuning_job:
            message = "This job never trained."
        else:
            message = "The tuning backend reports no metric curves for this job."
        return f'<section id="curves"><h2>Training curves</h2><p class="muted no-curves">{esc(message)}</p></section>'
    points = {name: series_points(values) for name, values in series.items()}
    loss = {name: points[name] for name in LOSS_SERIES if points.get(name)}
    accuracy = {name: points[name] for name in ACCURACY_SERIES if points.get(name)}
    other = {name: values for name, values in points.items() if values and name not in loss and name not in accuracy}
    charts = []
    if loss:
        charts.append(line_chart(loss, title="Loss (training and validation)", y_label="loss", css_class="chart loss"))
    if accuracy:
        charts.append(
            line_chart(accuracy, title="Token accuracy", y_label="fraction correct", css_class="chart accuracy")
        )
    if other:
        charts.append(line_chart(other, title="Other metrics", y_label="value"))
    return f'<section id="curves"><h2>Training curves</h2>{"".join(charts)}</section>'


def _checkpoints_section(view: TuningView | None) -> str:
    checkpoints = [c for c in (view.checkpoints if view else None) or [] if isinstance(c, dict)]
    if not checkpoints:
        return ""
    rows = "".join(
        f"<tr><td>{esc(c.get('checkpoint_id'))}</td><td>{esc(c.get('epoch'))}</td><td>{esc(c.get('step'))}</td>"
        f"<td>{console_links(c.get('endpoint'))}</td></tr>"
        for c in checkpoints
    )
    return (
        '<section><h2>Checkpoints</h2><table class="checkpoints"><thead><tr><th>Checkpoint</th><th>Epoch</th>'
        f"<th>Step</th><th>Endpoint</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _smoke_section(smoke: SmokeTestRecord | None) -> str:
    if smoke is None:
        return '<section id="smoke"><h2>Smoke test</h2><p class="muted">Not run yet.</p></section>'
    if smoke.skipped:
        return f'<section id="smoke"><h2>Smoke test</h2><p class="muted">Skipped: {esc(smoke.skipped)}</p></section>'
    verdict = "passed" if smoke.passed else "failed"
    head = (
        f"<p>{_verdict_badge(verdict)} {esc(smoke.prompts_passed)} of {esc(smoke.prompts_total)} "
        f"prompts passed · prompts from {esc(smoke.prompt_source)} · tested "
        f"{fmt_time(smoke.tested_at)}</p>"
    )
    reasons = "".join(f"<li>{esc(r)}</li>" for r in smoke.reasons or [])
    notes = "".join(f"<li>{esc(n)}</li>" for n in smoke.notes or [])
    rows = []
    for item in smoke.prompts or []:
        if not isinstance(item, dict):
            continue
        checks = "".join(
            f'<li class="{"ok" if c.get("passed") else "bad"}">{"✔" if c.get("passed") else "✘"} '
            f"{esc(c.get('kind'))}{': ' + esc(c.get('detail')) if c.get('detail') else ''}</li>"
            for c in item.get("checks") or []
            if isinstance(c, dict)
        )
        rouge = item.get("rouge") or {}
        rouge_text = " ".join(f"{esc(k)} {float(v):.3f}" for k, v in rouge.items() if isinstance(v, int | float))
        answer = item.get("response") if item.get("error") is None else f"error: {item.get('error')}"
        rows.append(
            f'<tr class="smoke-row {"ok" if item.get("passed") else "bad"}">'
            f"<td>{esc((item.get('index') or 0) + 1)}</td><td>{esc(item.get('label'))}</td>"
            f"<td><pre>{esc(item.get('prompt'))}</pre></td><td><pre>{esc(answer)}</pre></td>"
            f"<td><pre>{esc(item.get('reference'))}</pre></td>"
            f'<td><ul class="checks">{checks}</ul></td><td>{rouge_text or "–"}</td>'
            f"<td>{_verdict_badge('passed' if item.get('passed') else 'failed')}</td></tr>"
        )
    table = (
        '<table class="smoke"><thead><tr><th>#</th><th>Target</th><th>Prompt</th><th>Answer</th><th>Reference</th>'
        f"<th>Checks</th><th>ROUGE</th><th>Verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    scores = smoke.scores or {}
    chart = (
        bar_chart(scores, title="Base vs tuned (mean ROUGE over prompts with a reference)")
        if scores
        else '<p class="muted">No base-vs-tuned scores (no prompt has a reference answer, or comparison is off).</p>'
    )
    extra = (f"<h3>Reasons</h3><ul>{reasons}</ul>" if reasons else "") + (
        f"<h3>Notes</h3><ul>{notes}</ul>" if notes else ""
    )
    return f'<section id="smoke"><h2>Smoke test</h2>{head}{extra}{table}<h3>Base vs tuned</h3>{chart}</section>'


def _events_section(record: JobRecord) -> str:
    if not record.outbox:
        return '<section><h2>Events</h2><p class="muted">No events published for this job yet.</p></section>'
    rows = "".join(
        f"<tr><td><code>{esc(o.event_type)}</code></td><td><code>{esc(o.event_id)}</code></td>"
        f"<td>{fmt_time(o.published_at.isoformat()) if o.published_at else 'pending'}</td></tr>"
        for o in record.outbox
    )
    return (
        '<section><h2>Events</h2><table class="events"><thead><tr><th>Type</th><th>Event id</th><th>Published</th>'
        f"</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _config_section(config: ResolvedConfig | None) -> str:
    if config is None:
        return ""
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return f'<section><h2>Resolved config</h2><pre class="config">{esc(text)}</pre></section>'


# --- /ui/lineages/{lineage} ------------------------------------------------------------------------


def lineage_page(lineage: str, records: list[JobRecord], *, now: datetime) -> str:
    """The lineage's models over time (oldest first): live or retired, scores side by side."""
    base = "../"
    ordered = sorted(records, key=lambda r: r.created_at)
    metrics = ("rouge1", "rouge2", "rougeL")
    rows = []
    tuned_points: list[list[float]] = []
    base_points: list[list[float]] = []
    for number, record in enumerate(ordered, start=1):
        model = record.tuning.tuned_model if record.tuning else None
        if record.status is JobStatus.SUCCEEDED and model:
            state = (
                '<span class="badge grey">retired</span>'
                if is_retired(record)
                else '<span class="badge green">live</span>'
            )
        else:
            state = "–"
        scores = (record.smoke_test.scores if record.smoke_test else None) or {}
        tuned = scores.get("tuned") or {}
        base_scores = scores.get("base") or {}
        cells = "".join(
            f'<td class="num">{_score(tuned.get(m))}</td><td class="num muted">{_score(base_scores.get(m))}</td>'
            for m in metrics
        )
        if isinstance(tuned.get("rougeL"), int | float):
            tuned_points.append([number, float(tuned["rougeL"])])
        if isinstance(base_scores.get("rougeL"), int | float):
            base_points.append([number, float(base_scores["rougeL"])])
        rows.append(
            f'<tr data-job="{esc(record.id)}"><td>{number}</td>'
            f'<td><a href="{base}jobs/{quote(record.id)}">{esc(record.dataset.name.rsplit("/", 1)[-1])}</a></td>'
            f"<td>{fmt_time(record.created_at.isoformat())}</td><td>{badge(record.status.value)}</td>"
            f"<td>{console_links(model)}</td><td>{state}</td><td>{_verdict_badge(smoke_verdict(record))}</td>"
            f"{cells}</tr>"
        )
    head = "".join(f"<th>{m} tuned</th><th>{m} base</th>" for m in metrics)
    table = (
        '<table class="lineage"><thead><tr><th>#</th><th>Dataset</th><th>Created</th><th>Status</th><th>Model</th>'
        f"<th>Model state</th><th>Smoke test</th>{head}</tr></thead><tbody>"
        f"{''.join(rows) or '<tr><td colspan=13>No jobs in this lineage.</td></tr>'}</tbody></table>"
    )
    chart = ""
    if tuned_points or base_points:
        series = {"tuned rougeL": tuned_points, "base rougeL": base_points}
        chart = line_chart(
            {k: v for k, v in series.items() if v}, title="ROUGE-L by version (x = job number)", y_label="ROUGE-L"
        )
    return page(f"Lineage {lineage}", f"<h1>Lineage {esc(lineage)}</h1>{table}{chart}", base=base)


def _score(value: Any) -> str:
    return f"{float(value):.3f}" if isinstance(value, int | float) else "–"


def message_page(title: str, message: str, *, base: str) -> str:
    """An error or notice page (401, 403, 404, 409 ...)."""
    return page(
        title,
        f'<h1>{esc(title)}</h1><p class="error">{esc(message)}</p><p><a href="{base}">All jobs</a></p>',
        base=base,
    )
