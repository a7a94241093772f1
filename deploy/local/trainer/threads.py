"""How many CPU threads torch should use for a job on a machine shared with other processes."""

from __future__ import annotations

import os

# Below this many parameters the per-op work is too small to split across threads.
SMALL_MODEL_PARAMETERS = 10_000_000


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_num_threads(parameter_count: int, load_average: float | None = None) -> int:
    """Threads for a job: the cores nobody else is busy on, and one for tiny models.

    Measured on the shared 2-core machines: with 2 threads a SmolLM2 step takes 0.8 s on an idle
    machine but 10-30 s while other processes keep the cores busy (OpenMP threads wait for a
    descheduled sibling at every barrier), whereas 1 thread takes 1.4-2 s either way. Below
    ~10M parameters the per-op work is too small to split at all.
    """
    if parameter_count < SMALL_MODEL_PARAMETERS:
        return 1
    cores = available_cores()
    if load_average is None:
        try:
            load_average = os.getloadavg()[0]
        except OSError:
            load_average = 0.0
    return max(1, min(cores, round(cores - load_average)))
