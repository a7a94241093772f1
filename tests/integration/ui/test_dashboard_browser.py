"""The dashboard in a real browser: Debian's chromium driven by Playwright.

A job really trained on the local tuning server (tiny model, the shared ``trained_format_job``)
is tracked by a record in the Firestore emulator; the real poller copies its loss curves
through :meth:`VertexTuningBackend.read_metric_series` (the TensorBoard REST shape). The real
``jobs_api`` app serves ``/ui/`` behind :class:`shared.cli.ui_proxy.DashboardProxy`, which adds the
token, and chromium checks what a person sees. ``SFTPILOT_UPDATE_SCREENSHOTS=1`` also writes
the README's screenshots (``docs/dashboard-*.png``).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from werkzeug.serving import make_server

import shared.wiring as wiring
from deploy.local.tuning_server.pytest_fixtures import *  # noqa: F403 - the tuning-server fixtures
from deploy.local.tuning_server.testing import TEST_LOCATION, TEST_PROJECT
from shared.adapters.fakes import FakePublisher
from shared.adapters.firestore import FirestoreJobStore
from shared.adapters.vertex import VertexTuningBackend
from shared.cli.ui_proxy import DashboardProxy, Target
from shared.poller import PollOptions, run_poll
from shared.records import DatasetRef, JobRecord, new_record, utcnow
from shared.settings import Settings
from shared.states import JobStatus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "browser-test-token"
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2">'
CHROMIUM = os.environ.get("SFTPILOT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"no chromium at {CHROMIUM} (make test installs Debian's chromium with apt-get where it can)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def store(emulators, firestore_collections) -> FirestoreJobStore:
    jobs, effects = firestore_collections
    return FirestoreJobStore(project=emulators.project, jobs_collection=jobs, effects_collection=effects)


@pytest.fixture
def dashboard(emulators, store, monkeypatch) -> Iterator[str]:
    """The real jobs_api app on HTTP, behind the credential-adding proxy; yields the proxy's /ui/ URL."""
    services = wiring.Services(
        settings=Settings.from_env(
            {"GOOGLE_CLOUD_PROJECT": emulators.project, "SFTPILOT_BUCKET": "bkt", "SFTPILOT_API_TOKEN": TOKEN}
        )
    )
    services.__dict__["jobs"] = store
    monkeypatch.setattr(wiring, "_cached", services)
    app = functions_framework.create_app("jobs_api", str(ROOT / "functions/jobs_api.py"), "http")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy = DashboardProxy(Target(f"http://127.0.0.1:{server.server_port}", lambda: TOKEN, "test")).start()
    yield proxy.url
    proxy.close()
    server.shutdown()
    thread.join(5)


def _record(store: FirestoreJobStore, name: str, *path: JobStatus) -> JobRecord:
    now = utcnow()
    record = new_record(DatasetRef("bkt", f"datasets/support/{name}.jsonl", 7, "support"), now)
    for status in path:
        record = record.transition(status, now)
    assert store.create(record)
    return record


def _trained_record(store: FirestoreJobStore, job_name: str, tuning: VertexTuningBackend) -> JobRecord:
    """A RUNNING record of the trained job, then one real poll: SUCCEEDED with its curves."""
    record = _record(store, "v1", JobStatus.SUBMITTING, JobStatus.RUNNING)

    def enrich(current: JobRecord) -> JobRecord:
        return current.with_changes(
            utcnow(),
            tuning_job=job_name,
            config={"base_model": "gemini-2.5-flash", "display_name": HOSTILE},
            validation={
                "valid": True,
                "example_count": 24,
                "errors_count": 0,
                "warnings_count": 1,
                "issues": [
                    {"line": 3, "severity": "warning", "code": "W_TEXT", "path": "$.contents[0]", "message": HOSTILE}
                ],
                "stats": {"billing": {"dataset_tokens": 1200, "estimated_billable_tokens": 3600}},
            },
        )

    store.update(record.id, enrich)
    summary = run_poll(
        jobs=store, tuning=tuning, publisher=FakePublisher(), clock=utcnow, options=PollOptions(), owner="browser-test"
    )
    assert not summary.errors, summary.errors
    polled = store.get(record.id)
    assert polled is not None and polled.status is JobStatus.SUCCEEDED
    series = ((polled.tuning.curves if polled.tuning else None) or {}).get("series") or {}
    assert len(series["train_total_loss"]["steps"]) >= 2, series

    def smoke(current: JobRecord) -> JobRecord:
        return current.with_changes(
            utcnow(),
            smoke_test={
                "passed": True,
                "prompts_total": 2,
                "prompts_passed": 2,
                "prompt_source": "validation_set",
                "tested_at": "2026-12-04T10:00:00.000000Z",
                "prompts": [
                    {
                        "index": i,
                        "label": "tuned",
                        "prompt": f"question {i} {HOSTILE}",
                        "response": f"ACME: ok {i}",
                        "reference": f"ACME: ok {i}",
                        "checks": [{"kind": "non_empty", "passed": True, "detail": ""}],
                        "passed": True,
                        "error": None,
                        "rouge": {"rougeL": 0.9},
                    }
                    for i in range(2)
                ],
                "scores": {"tuned": {"rouge1": 0.9, "rougeL": 0.9}, "base": {"rouge1": 0.1, "rougeL": 0.1}},
            },
        )

    return store.update(record.id, smoke)


def test_a_person_sees_jobs_curves_smoke_test_and_cancels_a_queued_job(
    browser, dashboard, store, tuning_server, trained_format_job, tmp_path
):
    tuning = VertexTuningBackend(TEST_PROJECT, TEST_LOCATION, base_url=tuning_server.url)
    trained = _trained_record(store, trained_format_job.name, tuning)
    queued = _record(store, "v2", JobStatus.QUEUED)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    external: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(dashboard[:-4]) else external.append(request.url))

    page.goto(dashboard)
    rows = page.locator("table.jobs tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator(".badge").first.inner_text() == "QUEUED"  # newest first
    assert rows.nth(1).locator(".badge").first.inner_text() == "SUCCEEDED"
    assert "3,600" in rows.nth(1).inner_text()
    page.screenshot(path=str(tmp_path / "dashboard-jobs.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 260})

    page.goto(f"{dashboard}jobs/{trained.id}")
    assert page.locator("h1 .badge").inner_text() == "SUCCEEDED"
    loss = page.locator("svg.chart.loss polyline[data-series='train_total_loss']")
    assert loss.count() == 1 and int(loss.get_attribute("data-points") or 0) >= 2
    assert page.locator("svg.chart.accuracy").count() == 1
    assert page.locator("tr.smoke-row").count() == 2
    assert page.locator("svg.chart.bars rect[data-label='base']").count() >= 1
    text = page.locator("main").inner_text()
    assert "<script>window.__pwned = 1</script>" in text  # hostile dataset text shown as text
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator("main script").count() == 0
    page.locator("#curves").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "dashboard-job.png"))

    page.goto(f"{dashboard}jobs/{queued.id}")
    assert page.locator("h1 .badge").inner_text() == "QUEUED"
    page.locator("form.cancel button").click()
    page.wait_for_selector("h1 .badge[data-status='CANCELLED']", timeout=15000)
    stored = store.get(queued.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED
    assert stored.cancel_request is not None and stored.cancel_request.by == "local-token"
    assert page.locator("form.cancel").count() == 0

    page.goto(f"{dashboard}lineages/support")
    assert page.locator("table.lineage tbody tr").count() == 2
    assert ">live<" in page.content()

    assert dialogs == [] and external == []
    if os.environ.get("SFTPILOT_UPDATE_SCREENSHOTS") == "1":
        for name in ("dashboard-jobs.png", "dashboard-job.png"):
            shutil.copy(tmp_path / name, ROOT / "docs" / name)


def test_a_running_jobs_page_updates_itself(browser, dashboard, store):
    record = _record(store, "live", JobStatus.SUBMITTING, JobStatus.RUNNING)
    page = browser.new_page()
    page.goto(f"{dashboard}jobs/{record.id}")
    assert page.locator("h1 .badge").inner_text() == "RUNNING"
    page.evaluate("window.__sameDocument = true")

    def finish(current: JobRecord) -> JobRecord:
        moved = current.transition(JobStatus.SUCCEEDED, utcnow(), note="tuning job is JOB_STATE_SUCCEEDED")
        return replace(moved, tuning={"state": "JOB_STATE_SUCCEEDED"})

    store.update(record.id, finish)
    page.wait_for_selector("h1 .badge[data-status='SUCCEEDED']", timeout=20000)
    assert page.evaluate("window.__sameDocument === true")  # no reload: the script swapped <main>
