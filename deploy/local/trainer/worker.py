"""Run one training job in its own process: ``python -m deploy.local.trainer.worker REQUEST.json``.

The tuning server never trains in a request thread; it starts this worker and watches files in
the request's ``output_dir``:

* ``data_stats.json`` - written once the dataset is read (before the first step);
* ``progress.jsonl`` - one line per optimizer step: the ``StepMetrics`` fields plus ``total_steps``;
* ``result.json`` - the ``TrainResult`` on success (exit code 0);
* ``error.json`` - ``{"code": "DATASET_INVALID" | "INTERNAL" | "CANCELLED", "message": ...}``
  on failure (exit code 1, or 3 for ``CANCELLED``).

SIGTERM (or SIGINT) asks the job to stop; it stops before its next step, so within one step.
A request file that cannot be read exits with code 2 and a message on stderr (there is no
``output_dir`` to write ``error.json`` to).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from deploy.local.trainer.spec import (
    DatasetError,
    DatasetParseError,
    DataStats,
    InvalidTrainRequestError,
    StepMetrics,
    TrainingCancelled,
    TrainRequest,
)
from deploy.local.trainer.training import train

PROGRESS_FILE = "progress.jsonl"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
DATA_STATS_FILE = "data_stats.json"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_REQUEST = 2
EXIT_CANCELLED = 3

CODE_DATASET_INVALID = "DATASET_INVALID"
CODE_INTERNAL = "INTERNAL"
CODE_CANCELLED = "CANCELLED"


def main(argv: list[str] | None = None) -> int:
    """Train the request in ``argv[0]``; returns the process exit code."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    # Installed before anything slow (torch is imported inside train()), so an early SIGTERM
    # still ends as CANCELLED rather than killing the process.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m deploy.local.trainer.worker REQUEST.json", file=sys.stderr)
        return EXIT_BAD_REQUEST
    try:
        request = TrainRequest.from_json(Path(args[0]).read_text(encoding="utf-8"))
    except (OSError, InvalidTrainRequestError) as error:
        print(f"cannot read training request {args[0]}: {error}", file=sys.stderr)
        return EXIT_BAD_REQUEST
    return run_job(request, stop_requested)


def run_job(request: TrainRequest, stop_requested: threading.Event) -> int:
    """Train ``request``, writing progress, result or error files into its ``output_dir``."""
    output_dir = request.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in (RESULT_FILE, ERROR_FILE, DATA_STATS_FILE, PROGRESS_FILE):
        (output_dir / stale).unlink(missing_ok=True)
    total_steps = 0

    def on_data_stats(stats: DataStats) -> None:
        nonlocal total_steps
        total_steps = stats.step_count
        write_json_atomically(output_dir / DATA_STATS_FILE, stats.to_dict())

    with (output_dir / PROGRESS_FILE).open("a", encoding="utf-8") as progress:

        def on_step(metrics: StepMetrics) -> None:
            progress.write(json.dumps({**metrics.to_dict(), "total_steps": total_steps}) + "\n")
            progress.flush()

        try:
            result = train(request, on_step=on_step, should_stop=stop_requested.is_set, on_data_stats=on_data_stats)
        except TrainingCancelled as error:
            write_error(output_dir, CODE_CANCELLED, str(error))
            return EXIT_CANCELLED
        except DatasetError as error:
            details: dict[str, Any] = {}
            if isinstance(error, DatasetParseError):
                details = {"line": error.line, "file": error.path.name if error.path else None}
            write_error(output_dir, CODE_DATASET_INVALID, str(error), **details)
            return EXIT_FAILED
        except Exception as error:  # the job must end with error.json whatever went wrong
            traceback.print_exc(file=sys.stderr)
            write_error(output_dir, CODE_INTERNAL, f"{type(error).__name__}: {error}")
            return EXIT_FAILED
    write_json_atomically(output_dir / RESULT_FILE, json.loads(result.to_json()))
    return EXIT_OK


def write_error(output_dir: Path, code: str, message: str, **details: Any) -> None:
    write_json_atomically(output_dir / ERROR_FILE, {"code": code, "message": message, **details})


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    """Readers polling ``path`` see either nothing or the whole file."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    staging.replace(path)


if __name__ == "__main__":
    sys.exit(main())
