"""The worker process the tuning server starts: files it writes, exit codes, SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from trainer_test_data import TRAIN_WORDS, answer_format_records, write_jsonl

from deploy.local.trainer.spec import TrainRequest, TrainResult
from deploy.local.trainer.worker import (
    DATA_STATS_FILE,
    ERROR_FILE,
    EXIT_BAD_REQUEST,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    PROGRESS_FILE,
    RESULT_FILE,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
WAIT_SECONDS = 120


def start_worker(request: TrainRequest, tmp_path: Path) -> subprocess.Popen[bytes]:
    request_path = tmp_path / "request.json"
    request_path.write_text(request.to_json())
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.local.trainer.worker", str(request_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes]) -> int:
    _, stderr = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode is not None, stderr
    return process.returncode


def test_a_job_writes_progress_stats_and_result(request_factory, tmp_path: Path) -> None:
    request = request_factory(epochs=2)

    assert finish(start_worker(request, tmp_path)) == EXIT_OK

    lines = [json.loads(line) for line in (request.output_dir / PROGRESS_FILE).read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 23))
    assert {line["total_steps"] for line in lines} == {22}
    assert {line["epoch"] for line in lines} == {1, 2}
    assert all(line["train_total_loss"] > 0 for line in lines)
    result = TrainResult.from_json((request.output_dir / RESULT_FILE).read_text())
    assert [c.checkpoint_id for c in result.checkpoints] == ["1", "2"]
    assert all((c.adapter_dir / "adapter_model.safetensors").is_file() for c in result.checkpoints)
    assert [m.train_total_loss for m in result.metrics] == [line["train_total_loss"] for line in lines]
    assert json.loads((request.output_dir / DATA_STATS_FILE).read_text())["step_count"] == 22
    assert not (request.output_dir / ERROR_FILE).exists()


def test_an_invalid_dataset_ends_with_dataset_invalid(request_factory, tmp_path: Path) -> None:
    broken = write_jsonl(tmp_path / "broken.jsonl", [*answer_format_records(TRAIN_WORDS[:1]), "not json"])
    request = request_factory(train_path=broken)

    assert finish(start_worker(request, tmp_path)) == EXIT_FAILED

    error = json.loads((request.output_dir / ERROR_FILE).read_text())
    assert error["code"] == "DATASET_INVALID"
    assert (error["line"], error["file"]) == (5, "broken.jsonl")
    assert "broken.jsonl line 5" in error["message"]
    assert not (request.output_dir / RESULT_FILE).exists()


def test_sigterm_cancels_within_a_step(request_factory, tmp_path: Path) -> None:
    request = request_factory(epochs=2000)  # far longer than the test waits
    process = start_worker(request, tmp_path)
    progress = request.output_dir / PROGRESS_FILE
    deadline = time.monotonic() + WAIT_SECONDS
    while not (progress.exists() and progress.read_text().strip()) and process.poll() is None:
        assert time.monotonic() < deadline, "the worker never reported a step"
        time.sleep(0.1)

    process.send_signal(signal.SIGTERM)

    assert finish(process) == EXIT_CANCELLED
    error = json.loads((request.output_dir / ERROR_FILE).read_text())
    assert error["code"] == "CANCELLED"
    assert not (request.output_dir / RESULT_FILE).exists()
    completed = len(progress.read_text().splitlines())
    assert completed < 2000 * 11
    assert f"after {completed} steps" in error["message"]


def test_an_unreadable_request_exits_with_bad_request(tmp_path: Path) -> None:
    request_path = tmp_path / "request.json"
    request_path.write_text('{"epochs": 3}')

    process = subprocess.run(
        [sys.executable, "-m", "deploy.local.trainer.worker", str(request_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )

    assert process.returncode == EXIT_BAD_REQUEST
    assert "cannot read training request" in process.stderr
