from __future__ import annotations

import pytest
import torch

from deploy.local.trainer import engine, threads
from deploy.local.trainer.threads import SMALL_MODEL_PARAMETERS, default_num_threads


@pytest.fixture
def four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 4)


@pytest.mark.usefixtures("four_cores")
@pytest.mark.parametrize(("load_average", "expected"), [(0.0, 4), (0.4, 4), (1.0, 3), (2.6, 1), (9.0, 1)])
def test_large_models_use_the_cores_nobody_else_is_busy_on(load_average: float, expected: int) -> None:
    assert default_num_threads(135_000_000, load_average=load_average) == expected


@pytest.mark.usefixtures("four_cores")
def test_tiny_models_use_one_thread_even_on_an_idle_machine() -> None:
    assert default_num_threads(SMALL_MODEL_PARAMETERS - 1, load_average=0.0) == 1


def test_precision_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert engine.autocast_dtype("fp32") is None
    assert engine.autocast_dtype("bf16") is torch.bfloat16

    monkeypatch.setattr(engine, "cpu_supports_bf16", lambda: False)
    assert engine.autocast_dtype("auto") is None
    monkeypatch.setattr(engine, "cpu_supports_bf16", lambda: True)
    assert engine.autocast_dtype("auto") is torch.bfloat16
