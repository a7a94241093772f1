"""The dashboard on fakes: auth, escaping, CSRF, cancel rules, charts, live state, lazy import."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from datetime import timedelta
from urllib.parse import unquote

import pytest

from shared.adapters.fakes import FakeJobStore, FakeTuningBackend
from shared.jobs_api import Authenticator, JobsApi
from shared.records import DatasetRef, JobRecord, new_record, utcnow
from shared.states import JobStatus
from shared.ui import CSRF_COOKIE, check_csrf, csrf_cookie

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE = '<script>alert("x")</script>'


def _record(
    jobs: FakeJobStore, name: str, status: JobStatus, *, lineage: str = "faq", minutes_ago: int = 0
) -> JobRecord:
    created = utcnow() - timedelta(minutes=minutes_ago)
    rec = new_record(DatasetRef("bkt", f"datasets/{lineage}/{name}.jsonl", 1, lineage), created)
    path = {
        JobStatus.QUEUED: [JobStatus.QUEUED],
        JobStatus.RUNNING: [JobStatus.SUBMITTING, JobStatus.RUNNING],
        JobStatus.SUCCEEDED: [JobStatus.SUBMITTING, JobStatus.RUNNING, JobStatus.SUCCEEDED],
    }[status]
    for step in path:
        rec = rec.transition(step, created, note=f"note {HOSTILE}")
    assert jobs.create(rec)
    return rec


def _rich(jobs: FakeJobStore) -> JobRecord:
    rec = _record(jobs, "v1", JobStatus.SUCCEEDED)
    job = "projects/p/locations/us-central1/tuningJobs/42"

    def enrich(current: JobRecord) -> JobRecord:
        return current.with_changes(
            utcnow(),
            tuning_job=job,
            config={"base_model": "gemini-2.5-flash", "display_name": HOSTILE},
            validation={
                "valid": True,
                "example_count": 3,
                "errors_count": 0,
                "warnings_count": 1,
                "issues": [{"line": 2, "severity": "warning", "code": "W_X", "path": "$.contents", "message": HOSTILE}],
                "stats": {"billing": {"dataset_tokens": 100, "estimated_billable_tokens": 300}},
            },
            tuning={
                "state": "JOB_STATE_SUCCEEDED",
                "tuned_model": "projects/p/locations/us-central1/models/7@1",
                "endpoint": "projects/p/locations/us-central1/endpoints/9",
                "checkpoints": [
                    {
                        "checkpoint_id": "1",
                        "epoch": 1,
                        "step": 4,
                        "endpoint": "projects/p/locations/us-central1/endpoints/8",
                    }
                ],
                "curves": {
                    "series": {
                        "train_total_loss": {"steps": [1, 2, 3], "values": [3.0, 2.0, 1.0]},
                        "eval_total_loss": {"steps": [3], "values": [1.5]},
                        "train_fraction_of_correct_next_step_preds": {"steps": [1, 3], "values": [0.2, 0.7]},
                    }
                },
            },
            smoke_test={
                "passed": True,
                "prompts_total": 1,
                "prompts_passed": 1,
                "prompt_source": "validation_set",
                "tested_at": "2026-12-04T10:00:00.000000Z",
                "prompts": [
                    {
                        "index": 0,
                        "label": "tuned",
                        "prompt": f"say {HOSTILE}",
                        "response": f"answer {HOSTILE}",
                        "reference": "ref",
                        "checks": [{"kind": "non_empty", "passed": True, "detail": ""}],
                        "passed": True,
                        "error": None,
                        "rouge": {"rougeL": 0.5},
                    }
                ],
                "scores": {"tuned": {"rouge1": 0.6, "rougeL": 0.5}, "base": {"rouge1": 0.1, "rougeL": 0.1}},
            },
        )

    return jobs.update(rec.id, enrich)


@pytest.fixture
def ports():
    jobs, tuning = FakeJobStore(), FakeTuningBackend(quota=5)
    api = JobsApi(jobs=jobs, tuning=lambda: tuning, clock=utcnow, auth=Authenticator(static_token=TOKEN))
    return api, jobs, tuning


def _get(api, path, params=None, headers=None):
    return api.handle_ui("GET", path, params or {}, {**AUTH, **(headers or {})}, {})


@pytest.mark.parametrize("path", ["/ui/", "/ui/jobs/" + "0" * 32, "/ui/static/app.css", "/ui/lineages/faq"])
@pytest.mark.parametrize("header", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}])
def test_every_ui_path_needs_the_api_credentials(ports, path, header):
    api, _, _ = ports
    response = api.handle_ui("GET", path, {}, header, {})
    assert response.status == 401
    assert b"sftpilot ui" in response.body
    assert TOKEN.encode() not in response.body


def test_jobs_page_lists_newest_first_with_status_text_and_filters(ports):
    api, jobs, _ = ports
    old = _record(jobs, "old", JobStatus.QUEUED, minutes_ago=10)
    new = _rich(jobs)
    _record(jobs, "other", JobStatus.RUNNING, lineage="bot", minutes_ago=5)
    page = _get(api, "/ui/").body.decode()
    assert page.index(new.id) < page.index(old.id)
    assert ">SUCCEEDED<" in page and ">QUEUED<" in page and "300" in page and "gemini-2.5-flash" in page
    filtered = _get(api, "/ui/", {"lineage": "bot", "state": ""}).body.decode()
    assert "other.jsonl" not in filtered or ">RUNNING<" in filtered
    assert new.id not in filtered and old.id not in filtered
    bad = _get(api, "/ui/", {"state": "NOPE"})
    assert bad.status == 400 and b"state" in bad.body


def test_jobs_page_paginates_like_the_api(ports):
    api, jobs, _ = ports
    for i in range(30):
        _record(jobs, f"v{i}", JobStatus.QUEUED, minutes_ago=60 - i)
    first = _get(api, "/ui/").body.decode()
    assert first.count("<tr data-job=") == 25 and 'rel="next"' in first
    token = unquote(html.unescape(first.split("page_token=")[1].split('"')[0]))
    second = _get(api, "/ui/", {"page_token": token}).body.decode()
    assert second.count("<tr data-job=") == 5 and 'rel="next"' not in second


def test_job_page_shows_everything_escaped(ports):
    api, jobs, _ = ports
    rec = _rich(jobs)
    response = _get(api, f"/ui/jobs/{rec.id}")
    page = response.body.decode()
    assert response.status == 200
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert (
        'class="chart loss"' in page and 'data-series="train_total_loss"' in page and 'class="chart accuracy"' in page
    )
    assert page.count('class="smoke-row ok"') == 1 and "rougeL 0.500" in page
    assert 'class="chart bars"' in page
    assert "console.cloud.google.com/vertex-ai/generative/language/locations/us-central1/tuning/tuningJob/42" in page
    assert "endpoints/8" in page  # checkpoint endpoint
    assert "Timeline" in page and "Resolved config" in page
    assert TOKEN not in page
    csp = dict(response.headers)["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp


def test_job_without_curves_says_so(ports):
    api, jobs, _ = ports
    rec = _record(jobs, "run", JobStatus.RUNNING)
    jobs.update(rec.id, lambda r: r.with_changes(utcnow(), tuning_job="projects/p/locations/l/tuningJobs/1"))
    page = _get(api, f"/ui/jobs/{rec.id}").body.decode()
    assert "reports no metric curves" in page
    assert 'data-live="' in page  # a running job's page updates itself


def test_live_state_is_small_json(ports):
    api, jobs, _ = ports
    rec = _record(jobs, "q", JobStatus.QUEUED)
    response = _get(api, f"/ui/jobs/{rec.id}/live.json")
    assert response.content_type == "application/json"
    assert json.loads(response.body) == {
        "id": rec.id,
        "status": "QUEUED",
        "updated_at": rec.to_dict()["updated_at"],
        "terminal": False,
    }


def _cancel(api, job_id, *, cookie, field, extra=None):
    headers = {**AUTH, "Cookie": f"{CSRF_COOKIE}={cookie}", **(extra or {})}
    return api.handle_ui("POST", f"/ui/jobs/{job_id}/cancel", {}, headers, {"csrf_token": field})


def test_cancel_needs_a_matching_csrf_token(ports):
    api, jobs, _ = ports
    rec = _record(jobs, "q", JobStatus.QUEUED)
    page = _get(api, f"/ui/jobs/{rec.id}")
    cookie = dict(page.headers)["Set-Cookie"].split(";")[0].split("=", 1)[1]
    assert f'value="{cookie}"' in page.body.decode()
    assert "HttpOnly" in dict(page.headers)["Set-Cookie"] and "SameSite=Strict" in dict(page.headers)["Set-Cookie"]
    assert _cancel(api, rec.id, cookie=cookie, field="x" * 43).status == 403
    assert _cancel(api, rec.id, cookie=cookie, field=cookie, extra={"Sec-Fetch-Site": "cross-site"}).status == 403
    assert jobs.get(rec.id).status is JobStatus.QUEUED
    done = _cancel(api, rec.id, cookie=cookie, field=cookie)
    assert done.status == 303 and dict(done.headers)["Location"] == f"../{rec.id}"
    assert jobs.get(rec.id).status is JobStatus.CANCELLED
    assert jobs.get(rec.id).cancel_request.by == "local-token"
    again = _cancel(api, rec.id, cookie=cookie, field=cookie)
    assert again.status == 409  # same rules as POST /jobs/{id}:cancel


def test_cancel_uses_the_api_permission(ports):
    _, jobs, tuning = ports
    verifier = lambda token, aud: {"email": "viewer@example.com"}  # noqa: E731
    api = JobsApi(
        jobs=jobs,
        tuning=lambda: tuning,
        clock=utcnow,
        auth=Authenticator(audience="https://api", verifier=verifier, cancel_principals=("ops@example.com",)),
    )
    rec = _record(jobs, "q", JobStatus.QUEUED)
    headers = {"Authorization": "Bearer idtoken", "Cookie": f"{CSRF_COOKIE}={'a' * 43}"}
    page = api.handle_ui("GET", f"/ui/jobs/{rec.id}", {}, headers, {}).body.decode()
    assert "Cancel job" not in page and "may not cancel" in page
    refused = api.handle_ui("POST", f"/ui/jobs/{rec.id}/cancel", {}, headers, {"csrf_token": "a" * 43})
    assert refused.status == 403 and jobs.get(rec.id).status is JobStatus.QUEUED


def test_csrf_helpers():
    assert csrf_cookie("x=1") is None
    assert csrf_cookie(f"{CSRF_COOKIE}=short") is None
    with pytest.raises(Exception, match="CSRF"):
        check_csrf({"cookie": f"{CSRF_COOKIE}={'a' * 43}"}, {})


def test_lineage_page_shows_live_and_retired_models_with_scores(ports):
    api, jobs, _ = ports
    old = _rich(jobs)
    jobs.update(old.id, lambda r: r.with_changes(utcnow(), cleanup={"retired_by": "newer"}))
    newer = _record(jobs, "v2", JobStatus.SUCCEEDED)
    jobs.update(
        newer.id,
        lambda r: r.with_changes(utcnow(), tuning={"tuned_model": "projects/p/locations/l/models/8@1"}),
    )
    page = _get(api, "/ui/lineages/faq").body.decode()
    assert ">retired<" in page and ">live<" in page and "0.500" in page and "0.100" in page
    assert page.index(old.id) < page.index(newer.id)  # over time: oldest first
    assert _get(api, "/ui/lineages/bad%20name!").status == 400


def test_unknown_pages_methods_and_ids(ports):
    api, _, _ = ports
    assert _get(api, "/ui/nope").status == 404
    assert _get(api, "/ui/jobs/" + "0" * 32).status == 404
    assert _get(api, "/ui/jobs/not-an-id").status in (400, 404)
    assert api.handle_ui("DELETE", "/ui/", {}, AUTH, {}).status == 405
    redirect = api.handle_ui("GET", "/ui", {}, {}, {})
    assert redirect.status == 308 and dict(redirect.headers)["Location"] == "ui/"
    script = _get(api, "/ui/static/live.js")
    assert script.status == 200 and script.content_type.startswith("text/javascript")


def test_the_functions_cold_start_does_not_import_the_ui():
    code = "import sys, functions.main; print('shared.ui' in sys.modules, 'shared.ui.pages' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
