"""Quota and list-filter behaviours of the local server, through sftpilot's Vertex adapter.

The adapter is the production one (real google-genai client, real HTTP); the server runs
in-process without its scheduler, so created jobs stay PENDING and keep their quota slot.
Each behaviour that Vertex may show either way is a server option, tested both ways.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from deploy.local.tuning_server.config import QuotaMode, ServerConfig
from deploy.local.tuning_server.inference import _check_thinking
from deploy.local.tuning_server.server import TuningServer
from shared.adapters.fakes import FakeJobStore, FakePublisher
from shared.adapters.vertex import VertexTuningBackend
from shared.errors import InvalidArgumentError, QuotaExceededError
from shared.model_families import generation_settings
from shared.poller import PollOptions, run_poll, waiting_for_quota
from shared.ports import GenerationRequest, TuningJobSpec
from shared.records import DatasetRef, new_record, utcnow
from shared.states import WAITING_FOR_QUOTA, JobStatus, TuningState
from shared.submission import KEY_LABEL, submit_tuning_job

PROJECT, LOCATION = "p", "us-central1"


def _serve(state_dir: Path, **options: object) -> Iterator[VertexTuningBackend]:
    config = ServerConfig(
        state_dir=state_dir,
        port=0,
        project=PROJECT,
        location=LOCATION,
        model_map={"gemini-2.5-flash": "tiny-llama"},
        **options,  # type: ignore[arg-type]
    )
    server = TuningServer(config)
    thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()  # HTTP only: no scheduler, so jobs stay PENDING and hold their slot
    try:
        yield VertexTuningBackend(PROJECT, LOCATION, base_url=server.url, retry_attempts=1)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def serve(tmp_path: Path):
    servers: list[Iterator[VertexTuningBackend]] = []

    def start(name: str, **options: object) -> VertexTuningBackend:
        generator = _serve(tmp_path / name, **options)
        servers.append(generator)
        return next(generator)

    yield start
    for generator in servers:
        next(generator, None)


def _spec(name: str, **labels: str) -> TuningJobSpec:
    return TuningJobSpec("gemini-2.5-flash", f"gs://b/datasets/faq/{name}.jsonl", name, labels=labels)


def test_reject_mode_answers_429_and_queue_mode_holds_the_job_waiting_for_quota(serve):
    reject = serve("reject", quota=1, quota_mode=QuotaMode.REJECT)
    reject.create_job(_spec("one"))
    with pytest.raises(QuotaExceededError):
        reject.create_job(_spec("two"))

    queue = serve("queue", quota=1, quota_mode=QuotaMode.QUEUE)
    first = queue.create_job(_spec("one"))
    held = queue.create_job(_spec("two"))
    assert first.detail_state is None
    assert (held.state, held.detail_state) == (TuningState.PENDING, WAITING_FOR_QUOTA)
    assert queue.get_job(held.name).detail_state == WAITING_FOR_QUOTA  # the raw get keeps it too
    assert [j.detail_state for j in queue.list_jobs() if j.name == held.name] == [WAITING_FOR_QUOTA]


def test_the_pipeline_records_a_held_job_as_waiting_and_raises_no_stall(serve):
    tuning = serve("queue", quota=1, quota_mode=QuotaMode.QUEUE)
    tuning.create_job(_spec("blocker"))
    jobs, publisher = FakeJobStore(), FakePublisher()
    now = [utcnow()]
    rec = new_record(DatasetRef("b", "datasets/faq/v1.jsonl", 7, "faq"), now[0])
    jobs.create(rec)
    stored = submit_tuning_job(rec.id, jobs=jobs, tuning=tuning, deployment="t", clock=lambda: now[0], owner="i")
    assert stored.status is JobStatus.PENDING and waiting_for_quota(stored)
    now[0] += timedelta(hours=30)
    run_poll(
        jobs=jobs,
        tuning=tuning,
        publisher=publisher,
        clock=lambda: now[0],
        options=PollOptions(stall_after_seconds=3600),
        owner="poller",
    )
    after = jobs.get(rec.id)
    assert after is not None and after.tuning is not None
    assert after.tuning.waiting_for_quota is True
    assert publisher.of_type("job.stalled") == []


@pytest.mark.parametrize("refuse", [False, True], ids=["label-filter-served", "label-filter-refused"])
def test_listing_by_label_works_whether_or_not_the_server_takes_label_filters(serve, refuse):
    tuning = serve("labels", quota=50, refuse_label_filter=refuse)
    for n in range(5):
        tuning.create_job(_spec(f"d{n}", **{KEY_LABEL: f"k{n}", "team": "ml"}))
    found = list(tuning.list_jobs(labels={KEY_LABEL: "k3"}, page_size=2))
    assert [j.labels[KEY_LABEL] for j in found] == ["k3"]
    assert len(list(tuning.list_jobs(labels={"team": "ml"}, page_size=2))) == 5


def test_the_refused_label_filter_is_a_400_and_the_unfiltered_fallback_is_bounded(serve):
    tuning = serve("bounded", quota=50, refuse_label_filter=True)
    with pytest.raises(InvalidArgumentError):
        list(tuning._call("list", lambda: tuning._list_page(10, None, 'labels.team="ml"'), retry=False))
    for n in range(6):
        tuning.create_job(_spec(f"d{n}", **{KEY_LABEL: f"k{n}"}))
    tuning.unfiltered_list_limit = 4
    # newest first: the 4 newest are read (k5..k2), the two oldest are beyond the bound
    assert [j.labels[KEY_LABEL] for j in tuning.list_jobs(labels={KEY_LABEL: "k2"}, page_size=2)] == ["k2"]
    assert list(tuning.list_jobs(labels={KEY_LABEL: "k0"}, page_size=2)) == []


def test_a_submission_adopts_its_job_even_when_the_label_filter_is_refused(serve):
    tuning = serve("adopt", quota=5, refuse_label_filter=True)
    jobs = FakeJobStore()
    rec = new_record(DatasetRef("b", "datasets/faq/v1.jsonl", 7, "faq"), utcnow())
    jobs.create(rec)
    crashed = tuning.create_job(_spec("v1", **{KEY_LABEL: rec.id}))  # created, then the writer died
    stored = submit_tuning_job(rec.id, jobs=jobs, tuning=tuning, deployment="t", clock=utcnow, owner="poller")
    assert stored.tuning_job == crashed.name
    assert len(list(tuning.list_jobs())) == 1


@pytest.mark.parametrize(
    ("model", "budget", "level", "fragment"),
    [
        ("gemini-2.5-pro", 0, None, "only works in thinking mode"),
        ("gemini-2.5-pro", 64, None, "between 128 and 32768"),
        ("gemini-2.5-flash", 30000, None, "between 1 and 24576"),
        ("gemini-2.5-flash-lite", 100, None, "between 512 and 24576"),
        ("gemini-2.5-flash", None, "LOW", "not supported by gemini-2.5-flash"),
        ("gemini-3-pro-preview", None, "MINIMAL", "supported: LOW, HIGH"),
        ("gemini-3-pro-preview", 0, "LOW", "cannot both be set"),
    ],
)
def test_the_server_refuses_thinking_configs_vertex_refuses(serve, model, budget, level, fragment):
    tuning = serve("thinking")
    request = GenerationRequest(
        contents=[{"role": "user", "parts": [{"text": "hi"}]}], thinking_budget=budget, thinking_level=level
    )
    with pytest.raises(InvalidArgumentError) as raised:
        tuning.generate(model, request)
    assert fragment in raised.value.message


@pytest.mark.parametrize(
    ("model", "config"),
    [
        ("gemini-2.5-flash", {"thinkingBudget": 0}),
        ("gemini-2.5-flash-lite", {"thinkingBudget": 0}),
        ("gemini-2.5-pro", {"thinkingBudget": 128}),
        ("gemini-2.5-pro", {"thinkingBudget": -1}),
        ("gemini-3-pro-preview", {"thinkingLevel": "LOW"}),
        ("gemini-3-flash-preview", {"thinkingLevel": "MINIMAL"}),
        ("gemini-2.0-flash-001", {"thinkingBudget": 0}),
        ("gemini-3-pro-preview", {"thinkingBudget": 0, "thinkingLevel": None}),
    ],
)
def test_the_settings_the_smoke_test_sends_are_accepted(model, config):
    _check_thinking(config, model)  # raises ApiError(400) when refused
    settings = generation_settings(model, answer_tokens=64)
    sent = {"thinkingBudget": settings.thinking_budget, "thinkingLevel": settings.thinking_level}
    _check_thinking(sent, model)
