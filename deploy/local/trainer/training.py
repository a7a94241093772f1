"""``train()``: run a :class:`~deploy.local.trainer.spec.TrainRequest` in this process.

Importing this module is cheap; the torch stack (``deploy.local.trainer.engine``) loads on the
first call of :func:`train`, after the dataset was checked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deploy.local.trainer.dataset import read_conversations
from deploy.local.trainer.errors import EmptyDatasetError
from deploy.local.trainer.spec import DataStats, StepMetrics, TrainRequest, TrainResult


def train(
    request: TrainRequest,
    on_step: Callable[[StepMetrics], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    on_data_stats: Callable[[DataStats], None] | None = None,
) -> TrainResult:
    """Train ``request`` in this process and return its checkpoints, data stats and metrics.

    ``on_data_stats`` is called once the data is read (before the first step),
    ``on_step`` after every optimizer step, ``should_stop`` before every step.
    Raises ``DatasetError`` (``DatasetParseError`` for a bad line) and ``TrainingCancelled``.
    """
    # A broken file fails in milliseconds, before the torch stack is imported (~3-10 s).
    for path in (request.train_path, request.validation_path):
        if path is not None:
            check_dataset_parses(path)
    from deploy.local.trainer.engine import run_training  # noqa: PLC0415 - torch loads only when training

    return run_training(request, on_step=on_step, should_stop=should_stop, on_data_stats=on_data_stats)


def check_dataset_parses(path: Path) -> int:
    """Read every line of ``path``; returns the example count or raises ``DatasetError``."""
    count = sum(1 for _ in read_conversations(path))
    if count == 0:
        raise EmptyDatasetError(path, "the file holds no examples")
    return count
