"""End to end: the README's main job on the real local stack, from uploads to completion events.

Runs :func:`deploy.local.demo.run_demo` exactly as ``sftpilot demo`` does (emulators, local
tuning server, the four functions of functions/main.py, bridge, scheduler, push delivery), with
the tiny test model and a lenient tuning.yaml so it takes a minute or two instead of the
SmolLM2 demo's several. The tuning server runs with its Vertex-like defaults: every undeploy and
delete is an operation that answers ``done: false`` on its first poll, a versioned model name is
refused by models.delete, and deletes of deployed models/endpoints are FAILED_PRECONDITION.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from deploy.local.demo import DemoOptions, run_demo
from deploy.local.stack import DEFAULT_MODEL_MAP
from shared.events import load_schema
from shared.states import JobStatus

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_uploads_end_in_tuned_tested_and_retired_models(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(
        DemoOptions(
            state_dir=tmp_path / "demo",
            model_map=dict.fromkeys(DEFAULT_MODEL_MAP, "tiny-llama"),
            poll_interval=1.0,
            timeout_seconds=540,
            tuning_yaml=Path(__file__).with_name("lenient_tuning.yaml"),
        ),
        say=lines.append,
    )
    assert result.problems() == [], "\n".join(lines[-40:])

    by_name = {name.rsplit("/", 1)[-1]: record for name, record in result.records.items()}
    v1, v2, broken = by_name["v1.jsonl"], by_name["v2.jsonl"], by_name["faq.jsonl"]
    # v2 was uploaded while v1 trained: the one-job quota queued it, the poller submitted it later.
    assert JobStatus.QUEUED in [h.status for h in v2.history]
    assert broken.status is JobStatus.REJECTED and broken.tuning_job is None
    assert v1.cleanup is not None and v1.cleanup.retired_by == v2.id
    assert v1.tuning is not None and v1.tuning.tuned_model in result.retired_models

    types = [event["attributes"]["type"] for event in result.events]
    assert types.count("dataset.rejected") == 1
    assert types.count("job.succeeded") == 2
    assert types.count("smoke_test.passed") == 2
    assert types.count("model.deleted") == 1
    narrated = [line.split("event ", 1)[1].split()[0] for line in lines if "  event " in line]
    assert sorted(narrated) == sorted(types), "an event was counted but not narrated"
    ids = [event["data"]["event_id"] for event in result.events]
    assert len(ids) == len(set(ids)), "an event was published twice"
    for event in result.events:
        jsonschema.validate(event["data"], load_schema(event["attributes"]["type"]))

    assert result.reports_dir.parent == tmp_path.resolve() / "demo" / "reports"  # one folder per run
    reports = {p.name for p in result.reports_dir.rglob("*") if p.is_file()}
    assert {"validation.json", "smoke_test.json", "rouge.png"} <= reports
    assert any("Tuning" in line or "RUNNING" in line for line in lines)
