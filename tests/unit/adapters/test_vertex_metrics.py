"""``VertexTuningBackend.read_metric_series`` against the local tuning server's REST shape.

The server is used in-process (no socket, no training): the adapter's authorised request path
is routed to :meth:`TuningApp.handle`, so every URL the adapter builds (job -> experiment
context -> TensorBoard runs -> time series -> ``:batchRead``) is answered by the real routes.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.genai import errors as genai_errors

from deploy.local.tuning_server.app import TuningApp
from deploy.local.tuning_server.config import ServerConfig
from shared.adapters.vertex import VertexTuningBackend
from shared.errors import NotFoundError

PARENT = "projects/p/locations/us-central1"


class _Client:
    def __init__(self, app: TuningApp) -> None:
        self.app = app
        self.paths: list[str] = []

    def request(self, method: str, path: str, body: dict) -> SimpleNamespace:
        self.paths.append(path)
        raw = json.dumps(body).encode() if body else b""
        response = self.app.handle(method.upper(), f"/v1/{path}", {"Authorization": "Bearer t"}, raw)
        payload = json.loads(response.body or b"{}")
        if response.status != 200:
            raise genai_errors.ClientError(response.status, payload)
        return SimpleNamespace(body=json.dumps(payload))


@pytest.fixture
def app(tmp_path: Path) -> TuningApp:
    config = ServerConfig(
        state_dir=tmp_path / "state", project="p", location="us-central1", model_map={"gemini-2.5-flash": "tiny-llama"}
    )
    return TuningApp(config)  # the scheduler is not started: nothing trains


def _job_with_metrics(app: TuningApp, steps: list[dict]) -> str:
    body = {"baseModel": "gemini-2.5-flash", "supervisedTuningSpec": {"trainingDatasetUri": "/no/such.jsonl"}}
    response = app.handle("POST", f"/v1/{PARENT}/tuningJobs", {"Authorization": "Bearer t"}, json.dumps(body).encode())
    name = json.loads(response.body)["name"]
    job = app.store.jobs[name.rsplit("/", 1)[-1]]
    job.step_metrics = steps
    app.store.save_job(job)
    return name


def _backend(app: TuningApp) -> tuple[VertexTuningBackend, _Client]:
    api_client = _Client(app)
    backend = VertexTuningBackend(
        "p", "us-central1", client=SimpleNamespace(_api_client=api_client), sleep=lambda _: None
    )
    return backend, api_client


def test_reads_every_scalar_series_by_step(app):
    name = _job_with_metrics(
        app,
        [
            {"step": 1, "epoch": 1, "train_total_loss": 3.0, "train_fraction_of_correct_next_step_preds": 0.1},
            {
                "step": 2,
                "epoch": 1,
                "train_total_loss": 2.0,
                "train_fraction_of_correct_next_step_preds": 0.4,
                "eval_total_loss": 2.5,
            },
        ],
    )
    backend, api_client = _backend(app)
    series = backend.read_metric_series(name)
    assert series == {
        "train_total_loss": [(1, 3.0), (2, 2.0)],
        "train_fraction_of_correct_next_step_preds": [(1, 0.1), (2, 0.4)],
        "eval_total_loss": [(2, 2.5)],
    }
    # the documented resource chain, in order
    assert api_client.paths[0] == name
    assert "/metadataStores/default/contexts/" in api_client.paths[1]
    assert api_client.paths[2].endswith("/runs")
    assert api_client.paths[3].endswith("/runs/train/timeSeries")
    assert ":batchRead?timeSeries=" in api_client.paths[4]


def test_a_job_without_points_has_empty_series(app):
    name = _job_with_metrics(app, [])
    backend, _ = _backend(app)
    assert backend.read_metric_series(name) == {}


def test_a_job_without_an_experiment_has_none(app):
    backend = VertexTuningBackend(
        "p",
        "us-central1",
        client=SimpleNamespace(_api_client=SimpleNamespace(request=lambda *a: SimpleNamespace(body='{"name": "x"}'))),
    )
    assert backend.read_metric_series(f"{PARENT}/tuningJobs/1") is None


def test_an_unknown_job_is_not_found(app):
    backend, _ = _backend(app)
    with pytest.raises(NotFoundError):
        backend.read_metric_series(f"{PARENT}/tuningJobs/404")
