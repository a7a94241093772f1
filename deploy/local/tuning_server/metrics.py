"""A tuning job's per-step metrics in the REST shape Vertex uses: experiment -> TensorBoard series.

On Vertex a ``TuningJob`` names its ``experiment`` (a metadata context whose metadata key
``backing_tensorboard_resource`` names a TensorBoard); the TensorBoard experiment of the same id
holds runs, each run scalar time series, read with ``tensorboards:batchRead``
(https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs,
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tensorboards/batchRead).
This server answers the same calls from the job's stored ``step_metrics``:

========  ==========================================================================
GET       {P}/metadataStores/default/contexts/{E}                       the experiment
GET       {P}/tensorboards/local/experiments/{E}/runs                   one run ``train``
GET       {P}/tensorboards/local/experiments/{E}/runs/train/timeSeries  one per metric
GET       {P}/tensorboards/local:batchRead?timeSeries=NAME&...          the points
========  ==========================================================================

``{E}`` is ``tuning-{job id}``. Series ids are the metric names with ``-`` for ``_`` (ids allow
``[a-z0-9-]``); display names are the metric names (``train_total_loss``, ...).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote

from deploy.local.tuning_server.store import StateStore
from deploy.local.tuning_server.wire import JSON, invalid_argument, not_found

TENSORBOARD_ID = "local"
_NOT_METRICS = frozenset({"step", "epoch", "time", "wall_time"})


def experiment_name(job_name: str) -> str:
    """The ``experiment`` field of a job: ``projects/P/locations/L/metadataStores/default/contexts/tuning-ID``."""
    parent, _, job_id = job_name.partition("/tuningJobs/")
    return f"{parent}/metadataStores/default/contexts/tuning-{job_id}"


def route(store: StateStore, method: str, parent: str, parts: list[str], verb: str, query: str) -> JSON:
    """Answer one metadata/TensorBoard read; raises ApiError (404/400) otherwise."""
    path = "/".join(parts) + (f":{verb}" if verb else "")
    if method != "GET":
        raise not_found(f"Unknown method {method} {path}.")
    if parts[:3] == ["metadataStores", "default", "contexts"] and len(parts) == 4 and not verb:
        _job(store, parts[3])
        return {
            "name": f"{parent}/{path}",
            "displayName": parts[3],
            "schemaTitle": "system.Experiment",
            "metadata": {"backing_tensorboard_resource": f"{parent}/tensorboards/{TENSORBOARD_ID}"},
        }
    if parts[:2] != ["tensorboards", TENSORBOARD_ID]:
        raise not_found(f"Unknown resource {path}.")
    if len(parts) == 2 and verb == "batchRead":
        return {"timeSeriesData": [_read(store, unquote(name)) for name in parse_qs(query).get("timeSeries", [])]}
    if len(parts) == 5 and parts[2] == "experiments" and parts[4] == "runs" and not verb:
        _job(store, parts[3])
        return {"tensorboardRuns": [{"name": f"{parent}/{path}/train", "displayName": "train"}]}
    if len(parts) == 7 and parts[2] == "experiments" and parts[4:] == ["runs", "train", "timeSeries"] and not verb:
        steps = _job(store, parts[3])
        base = f"{parent}/{path}"
        return {
            "tensorboardTimeSeries": [
                {"name": f"{base}/{metric.replace('_', '-')}", "displayName": metric, "valueType": "SCALAR"}
                for metric in _metric_names(steps)
            ]
        }
    raise not_found(f"Unknown resource {path}.")


def _job(store: StateStore, experiment_id: str) -> list[JSON]:
    job_id = experiment_id.removeprefix("tuning-")
    with store.lock:
        job = store.jobs.get(job_id) if experiment_id.startswith("tuning-") else None
        if job is None:
            raise not_found(f"Experiment {experiment_id} not found.")
        return list(job.step_metrics)


def _metric_names(steps: list[JSON]) -> list[str]:
    names: dict[str, None] = {}
    for entry in steps:
        for key, value in entry.items():
            if key not in _NOT_METRICS and isinstance(value, int | float) and not isinstance(value, bool):
                names[key] = None
    return list(names)


def _read(store: StateStore, series_name: str) -> JSON:
    parts = series_name.split("/")
    try:
        index = parts.index("experiments")
        experiment_id, series_id = parts[index + 1], parts[-1]
    except (ValueError, IndexError):
        raise invalid_argument(f"Invalid time series name {series_name!r}.") from None
    steps = _job(store, experiment_id)
    metric = series_id.replace("-", "_")
    values: list[Any] = [
        {"step": str(entry["step"]), "scalar": {"value": float(entry[metric])}}
        for entry in steps
        if isinstance(entry.get(metric), int | float) and isinstance(entry.get("step"), int)
    ]
    return {"tensorboardTimeSeriesId": series_id, "valueType": "SCALAR", "values": values}
