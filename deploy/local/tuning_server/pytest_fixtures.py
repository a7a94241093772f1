"""pytest fixtures for suites that talk to the local tuning server.

Import them into a ``conftest.py``::

    from deploy.local.tuning_server.pytest_fixtures import *  # noqa: F403

``tuning_server`` is one tiny-llama server per test process (shared by every conftest that
imports it), ``tuning_datasets`` the teaching files, ``trained_format_job`` one job trained on
them (SUCCEEDED, intermediate checkpoints exported) that read-only tests share, and
``tuning_controls`` clears scripted faults and the request log after a test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.local.tuning_server.testing import (
    TEST_LOCATION,
    TEST_PROJECT,
    TINY_TEACHING_MULTIPLIER,
    RunningTuningServer,
    format_examples,
    shared_tuning_server,
    stop_shared_tuning_server,
    write_jsonl,
)

__all__ = [
    "TuningDatasets",
    "genai_client",
    "trained_format_job",
    "tuning_controls",
    "tuning_datasets",
    "tuning_server",
]

TRAINED_JOB_LABELS = {"suite": "shared-trained-job", "managed-by": "sftpilot-tests"}


@dataclass(frozen=True)
class TuningDatasets:
    """Dataset files (local paths: the server also reads gs:// through fake-gcs-server)."""

    format_train: Path
    """24 examples teaching the ``ACME: ok`` format (6 steps per epoch at batch 4)."""
    format_validation: Path
    long_train: Path
    """400 examples: with many epochs a job trains for minutes (cancel and quota tests)."""
    broken: Path
    """Line 2 is not JSON: the job must end FAILED with the line in its error."""


_cache: dict[str, Any] = {}


@pytest.fixture(scope="session")
def tuning_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTuningServer]:
    """The shared server (tiny-llama for every gemini-* model, quota 1, reject mode)."""
    yield shared_tuning_server(tmp_path_factory.getbasetemp())
    stop_shared_tuning_server()


@pytest.fixture
def tuning_controls(tuning_server: RunningTuningServer) -> Iterator[RunningTuningServer]:
    """The server, with scripted faults and the request log cleared after the test."""
    tuning_server.control("/__reset", {"state": False})
    yield tuning_server
    tuning_server.control("/__reset", {"state": False})


@pytest.fixture(scope="session")
def tuning_datasets(tmp_path_factory: pytest.TempPathFactory) -> TuningDatasets:
    """The dataset files, written once per test process."""
    if "datasets" not in _cache:
        folder = tmp_path_factory.getbasetemp() / "tuning-datasets"
        broken = folder / "broken.jsonl"
        broken.parent.mkdir(parents=True, exist_ok=True)
        rows = format_examples(3, seed=5)
        broken.write_text(f"{json.dumps(rows[0])}\n{{not json\n", encoding="utf-8")
        _cache["datasets"] = TuningDatasets(
            format_train=write_jsonl(folder / "format-train.jsonl", format_examples(24, seed=1)),
            format_validation=write_jsonl(folder / "format-validation.jsonl", format_examples(4, seed=2)),
            long_train=write_jsonl(folder / "long-train.jsonl", format_examples(400, seed=3)),
            broken=broken,
        )
    datasets: TuningDatasets = _cache["datasets"]
    return datasets


@pytest.fixture(scope="session")
def genai_client(tuning_server: RunningTuningServer) -> Any:
    """A real google-genai client pointed at the server (the recipe from the wire reference)."""
    import google.oauth2.credentials  # noqa: PLC0415
    from google import genai  # noqa: PLC0415
    from google.genai import types  # noqa: PLC0415

    return genai.Client(
        vertexai=True,
        project=TEST_PROJECT,
        location=TEST_LOCATION,
        credentials=google.oauth2.credentials.Credentials(token="local-test-token"),  # type: ignore[no-untyped-call]
        http_options=types.HttpOptions(base_url=tuning_server.url, api_version="v1"),
    )


@pytest.fixture(scope="session")
def trained_format_job(genai_client: Any, tuning_datasets: TuningDatasets) -> Any:
    """One job trained to SUCCEEDED on the teaching data (3 epochs, every checkpoint exported)."""
    if "trained" not in _cache:
        from google.genai import types  # noqa: PLC0415

        job = create_when_quota_frees(
            lambda: genai_client.tunings.tune(
                base_model="gemini-2.5-flash",
                training_dataset=types.TuningDataset(gcs_uri=str(tuning_datasets.format_train)),
                config=types.CreateTuningJobConfig(
                    tuned_model_display_name="shared-format-model",
                    validation_dataset=types.TuningValidationDataset(gcs_uri=str(tuning_datasets.format_validation)),
                    epoch_count=3,
                    adapter_size=types.AdapterSize.ADAPTER_SIZE_EIGHT,
                    learning_rate_multiplier=TINY_TEACHING_MULTIPLIER,
                    labels=TRAINED_JOB_LABELS,
                ),
            )
        )
        job = wait_until(lambda: genai_client.tunings.get(name=job.name), lambda j: j.has_ended, timeout=300)
        if not job.has_succeeded:
            pytest.fail(f"the shared training job did not succeed: {job.state} {job.error}")
        _cache["trained"] = job
    return _cache["trained"]


def create_when_quota_frees(create: Callable[[], Any], timeout: float = 300.0) -> Any:
    """Call ``create`` until it is not refused with 429 (another test's job holds the slot)."""
    from google.genai import errors  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while True:
        try:
            return create()
        except errors.ClientError as error:
            if error.code != 429 or time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def wait_until(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 120.0) -> Any:
    """Poll ``fetch`` until ``done(value)``; fail the test with the last value on timeout."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s; last value: {value!r}")
        time.sleep(0.1)
        value = fetch()
    return value
