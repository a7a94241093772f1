"""Bounded curves on the record: LTTB downsampling, merging, the poller's copy."""

from __future__ import annotations

import math

import pytest

from shared.adapters.fakes import FakeTuningBackend
from shared.curves import MAX_POINTS, downsample, merge_series, with_curves
from shared.ports import TuningJobSpec
from shared.record_parts import TuningView
from shared.states import TuningState


def test_short_series_are_kept_whole():
    points = [(i, float(i)) for i in range(10)]
    assert downsample(points, 10) == points


def test_downsampling_bounds_keeps_ends_and_order():
    points = [(i, math.sin(i / 50) + i / 1000) for i in range(5000)]
    kept = downsample(points, 300)
    assert len(kept) == 300
    assert kept[0] == points[0] and kept[-1] == points[-1]
    assert [p[0] for p in kept] == sorted({p[0] for p in kept})  # strictly increasing steps


def test_downsampling_keeps_a_spike():
    points = [(i, 1.0) for i in range(1000)]
    points[437] = (437, 50.0)
    kept = downsample(points, 20)
    assert (437, 50.0) in kept


def test_downsampling_keeps_the_shape_of_a_decreasing_loss():
    points = [(i, 5.0 * math.exp(-i / 200)) for i in range(2000)]
    kept = downsample(points, 50)
    values = [v for _, v in kept]
    assert values == sorted(values, reverse=True)
    assert max(values) == points[0][1] and min(values) == points[-1][1]


def test_too_small_a_bound_is_refused():
    with pytest.raises(ValueError, match="at least 3"):
        downsample([(1, 1.0)], 2)


def test_merge_appends_only_new_steps_and_drops_non_finite_values():
    stored = {"train_total_loss": {"steps": [1, 2], "values": [3.0, 2.5]}}
    fresh = {"train_total_loss": [(1, 99.0), (2, 99.0), (3, 2.0), (4, float("nan"))], "eval_total_loss": [(2, 2.7)]}
    merged = merge_series(stored, fresh)
    assert merged == {
        "eval_total_loss": {"steps": [2], "values": [2.7]},
        "train_total_loss": {"steps": [1, 2, 3], "values": [3.0, 2.5, 2.0]},
    }


def test_merge_stays_bounded_over_many_polls():
    stored: dict = {}
    for poll in range(20):
        fresh = {"loss": [(step, 1.0 / (step + 1)) for step in range(poll * 100, (poll + 1) * 100)]}
        stored = merge_series(stored, fresh, max_points=MAX_POINTS)
    steps, values = stored["loss"]["steps"], stored["loss"]["values"]
    assert len(steps) == len(values) == MAX_POINTS
    assert (steps[0], values[0]) == (0, 1.0) and steps[-1] == 1999


def _job(tuning: FakeTuningBackend, state: TuningState):
    job = tuning.create_job(TuningJobSpec(base_model="m", training_dataset_uri="gs://b/d.jsonl", display_name="d"))
    tuning.set_state(job.name, state)
    return tuning.get_job(job.name)


def test_with_curves_reads_running_jobs_and_keeps_stored_points():
    tuning = FakeTuningBackend()
    job = _job(tuning, TuningState.RUNNING)
    tuning.metric_series[job.name] = {"train_total_loss": [(1, 2.0), (2, 1.0)]}
    stored_view = TuningView(curves={"series": {"train_total_loss": {"steps": [0], "values": [3.0]}}})
    result = with_curves(tuning, job, stored_view)
    assert result.curves == {"series": {"train_total_loss": {"steps": [0, 1, 2], "values": [3.0, 2.0, 1.0]}}}


def test_with_curves_skips_pending_jobs_and_backends_without_series():
    tuning = FakeTuningBackend()
    pending = _job(tuning, TuningState.PENDING)
    assert with_curves(tuning, pending, None).curves is None
    assert tuning.calls["read_metric_series"] == 0
    tuning2 = FakeTuningBackend()
    running = _job(tuning2, TuningState.RUNNING)
    assert with_curves(tuning2, running, None).curves is None  # the page says "no curves"
    assert tuning2.calls["read_metric_series"] == 1


def test_a_failed_read_keeps_the_stored_curves():
    tuning = FakeTuningBackend()
    job = _job(tuning, TuningState.RUNNING)
    tuning.failures.fail_next("read_metric_series", RuntimeError("boom"))
    stored = TuningView(curves={"series": {"loss": {"steps": [1], "values": [1.0]}}})
    assert with_curves(tuning, job, stored).curves == stored.curves


def test_the_poller_copies_new_points_bounded_and_writes_nothing_when_none_are_new():
    from shared.adapters.fakes import FakeJobStore, FakePublisher
    from shared.poller import PollOptions, run_poll
    from shared.records import DatasetRef, new_record, utcnow
    from shared.states import JobStatus

    jobs, tuning = FakeJobStore(), FakeTuningBackend()
    job = _job(tuning, TuningState.RUNNING)
    record = new_record(DatasetRef("b", "datasets/l/a.jsonl", 1, "l"), utcnow())
    record = record.transition(JobStatus.SUBMITTING, utcnow()).transition(
        JobStatus.RUNNING, utcnow(), tuning_job=job.name
    )
    assert jobs.create(record)

    def poll() -> int:
        summary = run_poll(
            jobs=jobs, tuning=tuning, publisher=FakePublisher(), clock=utcnow, options=PollOptions(), owner="t"
        )
        assert not summary.errors
        return summary.changed

    tuning.metric_series[job.name] = {"train_total_loss": [(s, 10.0 / s) for s in range(1, 1001)]}
    assert poll() == 1
    stored = jobs.get(record.id).tuning.curves["series"]["train_total_loss"]
    assert len(stored["steps"]) == MAX_POINTS and stored["steps"][0] == 1 and stored["steps"][-1] == 1000
    assert poll() == 0  # same points: no write
    tuning.metric_series[job.name]["train_total_loss"].append((1001, 0.001))
    assert poll() == 1
    assert jobs.get(record.id).tuning.curves["series"]["train_total_loss"]["steps"][-1] == 1001
