"""The demo's narration and bookkeeping (issue 19 rough edges), without starting a stack."""

from __future__ import annotations

import queue
from pathlib import Path

from deploy.local.demo import _finished, describe, error_summary, explore_hint, narrate_events, run_reports_dir
from shared.records import DatasetRef, OutboxEntry, new_record, utcnow
from shared.states import JobStatus


def _succeeded(name: str = "datasets/support-bot/v1.jsonl"):
    now = utcnow()
    rec = new_record(DatasetRef("b", name, 3, "support-bot"), now)
    for status in (JobStatus.SUBMITTING, JobStatus.RUNNING, JobStatus.SUCCEEDED):
        rec = rec.transition(status, now)
    return rec.with_changes(now, smoke_test={"passed": True}, cleanup={"retired_by": "x"})


def test_a_record_whose_event_is_not_published_yet_is_not_finished():
    rec = _succeeded()
    pending = rec.add_outbox(OutboxEntry("e1", "model.deleted", {}))
    assert _finished(rec) is True
    assert _finished(pending) is False
    assert _finished(pending.mark_published("e1", utcnow())) is True


def test_every_event_taken_off_the_queue_is_narrated_including_late_ones():
    events: queue.Queue = queue.Queue()
    seen: list = []
    said: list[str] = []
    events.put({"attributes": {"type": "job.succeeded", "lineage": "support-bot", "state": "SUCCEEDED"}, "data": {}})
    assert narrate_events(events, seen, said.append, 0.0) == 1
    events.put({"attributes": {"type": "model.deleted", "lineage": "support-bot"}, "data": {}})  # arrives late
    assert narrate_events(events, seen, said.append, 0.0) == 1
    assert narrate_events(events, seen, said.append, 0.0) == 0
    assert len(seen) == 2
    assert [line.split("event ")[1].split()[0] for line in said] == ["job.succeeded", "model.deleted"]


def test_the_error_summary_counts_match_the_codes_and_say_when_the_list_is_cut():
    validation = {"error_counts": {"E_A": 2, "E_B": 1, "E_C": 1, "E_D": 1, "E_E": 1, "W_FEW": 7}}
    text = error_summary(validation)
    assert text.startswith("6 error(s) of 5 kinds: ")
    assert text.endswith(", … 1 more") and "W_FEW" not in text
    assert error_summary({"error_counts": {"E_A": 1}}) == "1 error(s) of 1 kind: E_A x1"


def test_a_rejected_record_is_described_with_its_error_summary():
    now = utcnow()
    rec = new_record(DatasetRef("b", "datasets/broken-faq/faq.jsonl", 1, "broken-faq"), now)
    rec = rec.transition(JobStatus.REJECTED, now).with_changes(
        now, validation={"valid": False, "error_counts": {"E_A": 3, "E_B": 2}}
    )
    assert describe(rec) == "REJECTED  invalid: 5 error(s) of 2 kinds: E_A x3, E_B x2"


def test_each_run_gets_its_own_reports_folder(tmp_path):
    first = run_reports_dir(tmp_path, now=1_700_000_000.0)
    first.mkdir(parents=True)
    second = run_reports_dir(tmp_path, now=1_700_000_000.0)
    assert first.parent == second.parent == tmp_path.resolve() / "reports"
    assert first != second and not second.exists()


def test_the_closing_hint_names_a_runnable_command(tmp_path):
    assert explore_hint(Path(".sftpilot/demo"), cli="sftpilot") == [
        'eval "$(sftpilot local env --state-dir .sftpilot/demo)"',
        "sftpilot jobs list",
    ]
    off_path = explore_hint(Path(".sftpilot/demo"), cli=".venv/bin/sftpilot")
    assert off_path[0].startswith('eval "$(.venv/bin/sftpilot local env')
    assert "make shell" in off_path[-1]
