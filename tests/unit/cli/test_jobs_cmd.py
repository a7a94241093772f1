"""``sftpilot jobs ...`` through the real CLI entry point against the real jobs_api app over HTTP.

The app is the deployed functions-framework app (fakes behind the ports), served by werkzeug on
a free loopback port, so the CLI's HTTP client, auth header and error handling are all real.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import functions_framework
import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

import shared.wiring as wiring
from shared.adapters.fakes import FakeJobStore, FakeTuningBackend
from shared.cli.jobs_cmd import cleanup_summary
from shared.cli.main import main
from shared.ports import TuningJobSpec
from shared.record_parts import CleanupRecord
from shared.records import DatasetRef, new_record, utcnow
from shared.settings import Settings
from shared.states import JobStatus

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "cli-token"


@pytest.fixture
def served(monkeypatch):
    jobs, tuning = FakeJobStore(), FakeTuningBackend(quota=10)
    services = wiring.Services(
        settings=Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p", "SFTPILOT_BUCKET": "bkt", "SFTPILOT_API_TOKEN": TOKEN})
    )
    services.__dict__["jobs"] = jobs
    services.__dict__["tuning"] = tuning
    wiring.install_services(services)
    app = functions_framework.create_app("jobs_api", str(ROOT / "functions/jobs_api.py"), "http")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SFTPILOT_API_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("SFTPILOT_API_TOKEN", TOKEN)
    yield jobs, tuning
    server.shutdown()
    thread.join(5)


def _add(jobs, name, *statuses, tuning_job=None, **changes):
    now = utcnow()
    rec = new_record(DatasetRef("bkt", f"datasets/faq/{name}.jsonl", 5, "faq"), now)
    for status in statuses:
        rec = rec.transition(status, now, note=f"to {status.value}")
    rec = rec.with_changes(now, tuning_job=tuning_job, **changes)
    jobs.create(rec)
    return rec


def test_list_json_has_the_stable_keys(served):
    jobs, _ = served
    rec = _add(jobs, "v1", JobStatus.QUEUED)
    result = CliRunner().invoke(main, ["jobs", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows[0]["id"] == rec.id
    assert {"id", "status", "lineage", "dataset", "tuning_job", "updated_at"} <= set(rows[0])
    assert rows[0]["dataset"] == "gs://bkt/datasets/faq/v1.jsonl#5"


def test_list_table_and_filters(served):
    jobs, _ = served
    _add(jobs, "v1", JobStatus.QUEUED)
    _add(jobs, "v2", JobStatus.REJECTED)
    result = CliRunner().invoke(main, ["jobs", "list", "--state", "REJECTED"])
    assert result.exit_code == 0
    assert "REJECTED" in result.output and "QUEUED" not in result.output
    assert result.output.splitlines()[0].split()[:3] == ["ID", "STATUS", "LINEAGE"]


def test_show_renders_history_validation_and_smoke_test(served):
    jobs, _ = served
    rec = _add(
        jobs,
        "v1",
        JobStatus.SUBMITTING,
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
        tuning_job="projects/p/locations/l/tuningJobs/9",
        validation={
            "valid": True,
            "error_counts": {"W_FEW_EXAMPLES": 1},
            "issues": [
                {
                    "line": None,
                    "path": "",
                    "code": "W_FEW_EXAMPLES",
                    "severity": "warning",
                    "message": "only 20",
                    "hint": "",
                }
            ],
            "report_uri": "gs://bkt/reports/faq/v1/5/validation.json",
        },
        smoke_test={
            "passed": True,
            "reasons": [],
            "prompts": [
                {
                    "prompt": "hi",
                    "response": "Hi there! — Acme Support",
                    "checks": [{"kind": "contains", "passed": True}],
                }
            ],
            "scores": {
                "tuned": {"rouge1": 0.91, "rouge2": 0.8, "rougeL": 0.9},
                "base": {"rouge1": 0.2, "rouge2": 0.05, "rougeL": 0.15},
            },
            "report_uri": "gs://bkt/reports/faq/v1/5/smoke_test.json",
            "chart_uri": "gs://bkt/reports/faq/v1/5/rouge.png",
        },
    )
    result = CliRunner().invoke(main, ["jobs", "show", rec.id])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Job {rec.id}  SUCCEEDED" in out
    assert "Validation: valid, 0 error(s), 1 warning(s)" in out
    assert out.index("RECEIVED") < out.index("SUBMITTING") < out.index("SUCCEEDED ")
    assert "Smoke test: PASSED (1/1 prompts)" in out
    assert "tuned         0.910  0.800  0.900" in out and "base          0.200  0.050  0.150" in out
    assert "chart       gs://bkt/reports/faq/v1/5/rouge.png" in out
    shown = CliRunner().invoke(main, ["jobs", "show", rec.id, "--json"])
    assert json.loads(shown.output)["tuning_job"] == "projects/p/locations/l/tuningJobs/9"


def test_show_and_api_say_when_a_job_waits_for_quota(served):
    jobs, _ = served
    held = _add(
        jobs,
        "v1",
        JobStatus.SUBMITTING,
        JobStatus.PENDING,
        tuning_job="projects/p/locations/l/tuningJobs/9",
        tuning={
            "state": "JOB_STATE_PENDING",
            "detail_state": "TUNING_JOB_STATE_WAITING_FOR_QUOTA",
            "waiting_for_quota": True,
        },
    )
    queued = _add(jobs, "v2", JobStatus.QUEUED)
    running = _add(
        jobs,
        "v3",
        JobStatus.SUBMITTING,
        JobStatus.RUNNING,
        tuning_job="projects/p/locations/l/tuningJobs/8",
        tuning={"state": "JOB_STATE_RUNNING", "waiting_for_quota": False},
    )
    shown = CliRunner().invoke(main, ["jobs", "show", held.id])
    assert "waiting     for quota (Vertex accepted the job" in shown.output
    assert "waiting     for quota (not submitted yet" in CliRunner().invoke(main, ["jobs", "show", queued.id]).output
    assert "waiting" not in CliRunner().invoke(main, ["jobs", "show", running.id]).output
    as_json = json.loads(CliRunner().invoke(main, ["jobs", "show", held.id, "--json"]).output)
    assert as_json["tuning"]["waiting_for_quota"] is True


def test_show_unknown_and_malformed_ids_fail_cleanly(served):
    missing = CliRunner().invoke(main, ["jobs", "show", "0" * 32])
    assert missing.exit_code == 1
    assert "E_RECORD_NOT_FOUND" in missing.output and "Traceback" not in missing.output
    malformed = CliRunner().invoke(main, ["jobs", "show", "nope"])
    assert malformed.exit_code == 1 and "E_INVALID_PARAMETER" in malformed.output


def test_cancel_running_job(served):
    jobs, tuning = served
    job = tuning.create_job(TuningJobSpec("gemini-2.5-flash", "gs://bkt/d.jsonl", "d"))
    rec = _add(jobs, "v1", JobStatus.SUBMITTING, JobStatus.RUNNING, tuning_job=job.name)
    result = CliRunner().invoke(main, ["jobs", "cancel", rec.id])
    assert result.exit_code == 0, result.output
    assert "CANCELLING" in result.output and "local-token" in result.output
    assert tuning.calls["cancel_job"] == 1


def test_watch_follows_until_terminal_and_exits_by_outcome(served):
    jobs, _ = served
    rec = _add(jobs, "v1", JobStatus.SUBMITTING, JobStatus.RUNNING, tuning_job="projects/p/locations/l/tuningJobs/1")
    done = threading.Event()

    def finish_later():
        done.wait(0.6)
        jobs.update(rec.id, lambda r: r.transition(JobStatus.FAILED, utcnow(), note="boom"))

    threading.Thread(target=finish_later, daemon=True).start()
    result = CliRunner().invoke(main, ["jobs", "watch", rec.id, "--interval", "0.2", "--timeout", "30"])
    done.set()
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.endswith("RUNNING") for line in lines)
    assert any(line.endswith("FAILED") for line in lines)


def test_watch_json_prints_the_final_record_and_waits_for_the_smoke_test(served):
    jobs, _ = served
    rec = _add(jobs, "v1", JobStatus.SUBMITTING, JobStatus.RUNNING, JobStatus.SUCCEEDED, tuning_job="t/1")
    done = threading.Event()

    def smoke_test_later():
        done.wait(0.6)
        jobs.update(rec.id, lambda r: r.with_changes(utcnow(), smoke_test={"passed": True, "prompts": []}))

    threading.Thread(target=smoke_test_later, daemon=True).start()
    result = CliRunner().invoke(main, ["jobs", "watch", rec.id, "--interval", "0.2", "--json", "--smoke-wait", "30"])
    done.set()
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert final["id"] == rec.id and final["smoke_test"]["passed"] is True


def test_missing_api_url_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("SFTPILOT_API_URL", raising=False)
    result = CliRunner().invoke(main, ["jobs", "list"])
    assert result.exit_code == 2
    assert "SFTPILOT_API_URL" in result.output


def test_unreachable_api_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SFTPILOT_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SFTPILOT_API_TOKEN", "x")
    result = CliRunner().invoke(main, ["jobs", "list"])
    assert result.exit_code == 2
    assert "cannot reach the jobs API" in result.output


def test_cleanup_summary_names_steps_still_pending():
    run = {"targets": [{"status": "retired"}, {"status": "pending"}], "retired_models": ["m1"]}
    assert cleanup_summary(CleanupRecord(run=run)) == (
        "1 superseded model(s) retired, 1 pending (Vertex operations still running; resumed automatically)"
    )


def test_watch_right_after_upload_waits_for_the_record_to_appear(served):
    jobs, _ = served
    now = utcnow()
    rec = new_record(DatasetRef("bkt", "datasets/faq/late.jsonl", 5, "faq"), now).transition(
        JobStatus.REJECTED, now, note="invalid"
    )
    created = threading.Event()

    def create_later():
        created.wait(0.8)
        jobs.create(rec)

    threading.Thread(target=create_later, daemon=True).start()
    result = CliRunner().invoke(main, ["jobs", "watch", rec.id, "--interval", "0.2", "--timeout", "30"])
    created.set()
    assert "waiting for the job record" in result.output
    assert "REJECTED" in result.output and "Traceback" not in result.output
    assert result.exit_code == 1  # the job itself was rejected: watch ran to its end


def test_watch_gives_up_on_a_record_that_never_appears_with_a_clear_message(served):
    result = CliRunner().invoke(main, ["jobs", "watch", "0" * 32, "--appear-wait", "0.5", "--interval", "0.2"])
    assert result.exit_code == 1
    assert "no job record" in result.output and "E_RECORD_NOT_FOUND" in result.output
    assert "Traceback" not in result.output


def test_show_renders_the_gate_verdict_per_comparison_and_per_prompt(served):
    from shared.gate import GateOptions, GateResult, PromptComparison, Verdict, compare

    table = [PromptComparison(i, f"question {i}", 0.9, 0.2) for i in range(4)]
    comparison = compare("live", "projects/p/locations/l/models/1@1", table, GateOptions(enabled=True))
    gate = GateResult(Verdict.PROMOTED, comparison.reason, "rougeL", (comparison,)).to_dict()
    jobs, _ = served
    rec = _add(jobs, "v1", JobStatus.SUBMITTING, JobStatus.RUNNING, JobStatus.SUCCEEDED, gate=gate)
    result = CliRunner().invoke(main, ["jobs", "show", rec.id])
    assert result.exit_code == 0, result.output
    assert "Gate: PROMOTED (rougeL)" in result.output
    assert "vs live  new 0.900 old 0.200 delta +0.700" in result.output
    assert "4 win(s) 0 loss(es) 0 tie(s) -> PROMOTED" in result.output
    assert "win  0.900 vs 0.200  'question 0'" in result.output
    shown = json.loads(CliRunner().invoke(main, ["jobs", "show", rec.id, "--json"]).output)
    assert shown["gate"]["verdict"] == "PROMOTED"
    listed = json.loads(CliRunner().invoke(main, ["jobs", "list", "--json"]).output)
    assert listed[0]["gate"] == "PROMOTED"


def test_show_and_costs_give_estimate_vs_actual_per_job_and_per_lineage_month(served):
    jobs, _ = served
    estimate = {"billable_tokens": 800_000, "cost_usd": 4.0, "price_as_of": "2025-10-01", "epochs_assumed": False}
    validation = {"valid": True, "cost": {"estimate": estimate, "within_budget": True, "ledger_key": "faq:2026-03"}}
    actual = {"actual": {"billable_tokens": 790_000, "cost_usd": 3.95}}
    rec = _add(jobs, "v1", JobStatus.SUBMITTING, JobStatus.SUCCEEDED, validation=validation, cost=actual)
    refused = {"valid": False, "cost": {"estimate": {**estimate, "cost_usd": 99.0}, "within_budget": False}}
    _add(jobs, "v2", JobStatus.REJECTED, validation=refused)

    shown = CliRunner().invoke(main, ["jobs", "show", rec.id])
    assert (
        "Cost: estimate 800,000 billable tokens = $4.00 (prices of 2025-10-01); actual 790,000 = $3.95" in shown.output
    )
    listed = json.loads(CliRunner().invoke(main, ["jobs", "list", "--json"]).output)
    by_id = {j["id"]: j for j in listed}
    assert by_id[rec.id]["cost"]["actual_cost_usd"] == 3.95
    costs = CliRunner().invoke(main, ["jobs", "costs", "--json"])
    assert costs.exit_code == 0, costs.output
    [row] = json.loads(costs.output)
    assert (row["lineage"], row["jobs"], row["estimated_usd"], row["actual_usd"]) == ("faq", 1, 4.0, 3.95)
