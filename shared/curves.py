"""Training curves kept on the job record: bounded, downsampled copies of the backend's series.

The tuning backend keeps every logged point of a job's metric time series (on Vertex, the
TensorBoard time series of the job's experiment; see
:meth:`shared.adapters.vertex.VertexTuningBackend.read_metric_series`). A Firestore document is
limited to 1 MiB, so the poller copies them into ``record.tuning["curves"]`` bounded: at most
:data:`MAX_POINTS` points per series, downsampled with Largest-Triangle-Three-Buckets (keeps the
first and last point and the visible shape: spikes survive, flat runs thin out).

Stored shape (JSON; parallel lists because Firestore cannot store an array inside an array)::

    {"series": {"train_total_loss": {"steps": [1, 2, ...], "values": [2.31, 2.05, ...]}, ...}}

Example:
    >>> len(downsample([(i, float(i % 7)) for i in range(1000)], 50))
    50
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from shared.logs import log_event
from shared.ports import MetricSeries, TuningBackend, TuningJob
from shared.record_parts import TuningView
from shared.records import JSON
from shared.states import TuningState

MAX_POINTS = 300
"""Points kept per series on the record (a chart 600-900 px wide shows no more)."""

_READ_STATES = frozenset({TuningState.RUNNING, TuningState.CANCELLING})
"""States in which a job writes new points; ended jobs are read once more (their last points)."""

Point = tuple[int, float]


def downsample(points: Sequence[Point], max_points: int = MAX_POINTS) -> list[Point]:
    """At most ``max_points`` points of ``points`` (sorted by step), first and last always kept.

    Largest-Triangle-Three-Buckets (Steinarsson 2013): the interior is cut into
    ``max_points - 2`` buckets and each bucket keeps the point forming the largest triangle with
    the point kept before it and the average of the next bucket, which keeps peaks and troughs.

    >>> downsample([(0, 1.0), (1, 5.0), (2, 1.0), (3, 1.0)], 3)
    [(0, 1.0), (1, 5.0), (3, 1.0)]
    """
    if max_points < 3:
        raise ValueError(f"max_points must be at least 3, got {max_points}")
    data = list(points)
    if len(data) <= max_points:
        return data
    kept: list[Point] = [data[0]]
    bucket_size = (len(data) - 2) / (max_points - 2)
    previous = data[0]
    for bucket in range(max_points - 2):
        start = math.floor(bucket * bucket_size) + 1
        end = math.floor((bucket + 1) * bucket_size) + 1
        next_start = end
        next_end = min(math.floor((bucket + 2) * bucket_size) + 1, len(data))
        following = data[next_start:next_end] or [data[-1]]
        avg_x = sum(p[0] for p in following) / len(following)
        avg_y = sum(p[1] for p in following) / len(following)
        best = data[start]
        best_area = -1.0
        for candidate in data[start:end]:
            area = abs(
                (previous[0] - avg_x) * (candidate[1] - previous[1])
                - (previous[0] - candidate[0]) * (avg_y - previous[1])
            )
            if area > best_area:
                best, best_area = candidate, area
        kept.append(best)
        previous = best
    kept.append(data[-1])
    return kept


def merge_series(stored: Mapping[str, Any], fresh: MetricSeries, max_points: int = MAX_POINTS) -> JSON:
    """Stored points plus the fresh ones after the last stored step, each series downsampled.

    A backend may return only a sample of a long series (Vertex's ``batchRead`` returns at most
    1,000 scalars per series), so points we already hold are kept rather than replaced.

    >>> merge_series({"loss": {"steps": [1], "values": [2.0]}}, {"loss": [(1, 9.0), (2, 1.5)]})
    {'loss': {'steps': [1, 2], 'values': [2.0, 1.5]}}
    """
    merged: JSON = {}
    for name in sorted(set(stored) | set(fresh)):
        old = series_points(stored.get(name))
        last = old[-1][0] if old else None
        new = sorted((int(s), float(v)) for s, v in fresh.get(name, ()) if _finite(v))
        combined = old + [p for p in new if last is None or p[0] > last]
        kept = downsample(combined, max_points)
        merged[name] = {"steps": [step for step, _ in kept], "values": [value for _, value in kept]}
    return merged


def series_points(stored: Any) -> list[Point]:
    """``(step, value)`` pairs of one stored series (tolerates a malformed or missing one).

    >>> series_points({"steps": [1, 2], "values": [0.5, 0.25]})
    [(1, 0.5), (2, 0.25)]
    """
    if not isinstance(stored, Mapping):
        return []
    steps, values = stored.get("steps") or [], stored.get("values") or []
    return [(int(s), float(v)) for s, v in zip(steps, values, strict=False) if _finite(v) and _finite(s)]


def with_curves(tuning: TuningBackend, job: TuningJob, stored_view: TuningView | None) -> TuningJob:
    """``job`` carrying its curves: the stored ones merged with what the backend has now.

    Called by the poller for each job it reconciles. The backend is asked only while the job
    writes points (and once when it has ended). A failed read keeps the stored curves: curves
    are a view, never a reason to fail a poll.
    """
    stored = (stored_view.curves if stored_view else None) or None
    if not (job.state in _READ_STATES or job.has_ended):
        return replace(job, curves=stored)
    try:
        fresh = tuning.read_metric_series(job.name)
    except Exception as exc:
        log_event("WARNING", "poll: metric series not read", tuning_job=job.name, error=repr(exc))
        return replace(job, curves=stored)
    if fresh is None and stored is None:
        return job  # this backend keeps no series: the dashboard says so
    series = merge_series((stored or {}).get("series") or {}, fresh or {})
    return replace(job, curves={"series": series})


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
