"""Configuration of the local tuning server (built from the command line in ``__main__``).

>>> parse_model_map("gemini-2.5-flash=smollm2-135m, gemini-2.5-flash-lite=tiny-llama")
{'gemini-2.5-flash': 'smollm2-135m', 'gemini-2.5-flash-lite': 'tiny-llama'}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

PUBLISHER_PREFIX = "publishers/google/models/"

DEFAULT_MODEL_MAP: dict[str, str] = {
    "gemini-2.5-flash": "smollm2-135m",
    "gemini-2.5-flash-lite": "smollm2-135m",
    "gemini-2.5-pro": "smollm2-135m",
    "gemini-2.0-flash-001": "smollm2-135m",
    "gemini-2.0-flash-lite-001": "smollm2-135m",
}
"""The Gemini SFT base models (2025) all train SmolLM2-135M-Instruct unless configured otherwise."""

# ADAPTER_SIZE_* -> LoRA rank. Vertex's adapter size *is* a LoRA rank, so the mapping is 1:1.
ADAPTER_SIZE_TO_RANK: dict[str, int] = {
    "ADAPTER_SIZE_ONE": 1,
    "ADAPTER_SIZE_TWO": 2,
    "ADAPTER_SIZE_FOUR": 4,
    "ADAPTER_SIZE_EIGHT": 8,
    "ADAPTER_SIZE_SIXTEEN": 16,
    "ADAPTER_SIZE_THIRTY_TWO": 32,
}


class QuotaMode(StrEnum):
    """What a create does when every concurrent-job slot is taken."""

    REJECT = "reject"
    """Answer 429 RESOURCE_EXHAUSTED, as Vertex does when the concurrent tuning-job quota is full."""
    QUEUE = "queue"
    """Accept the job as JOB_STATE_PENDING with ``tuningJobState=TUNING_JOB_STATE_WAITING_FOR_QUOTA``
    and start it when a slot frees (what Vertex may do instead of a 429; see runner.create_job)."""


class VersionedDelete(StrEnum):
    """What ``DELETE models/{id}@{version}`` does (Vertex's answer is not documented)."""

    REJECT = "reject"
    """400 INVALID_ARGUMENT: ``models.delete`` takes ``models/{model}`` without a version
    (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models/delete)."""
    ACCEPT = "accept"
    """Delete the whole model, ignoring the version suffix."""


class ModelMapError(ValueError):
    """A ``--model-map`` entry is not ``name=local-model``."""


def parse_model_map(raw: str) -> dict[str, str]:
    """Parse ``name=local,name2=local2`` (whitespace tolerated, empty string = empty map)."""
    mapping: dict[str, str] = {}
    for raw_entry in raw.split(","):
        entry = raw_entry.strip()
        if not entry:
            continue
        name, sep, local = entry.partition("=")
        if not sep or not name.strip() or not local.strip():
            raise ModelMapError(f"model map entry {entry!r} must look like gemini-2.5-flash=smollm2-135m")
        mapping[normalize_base_model(name.strip())] = local.strip()
    return mapping


def normalize_base_model(name: str) -> str:
    """``publishers/google/models/gemini-2.5-flash`` -> ``gemini-2.5-flash``."""
    return name.removeprefix(PUBLISHER_PREFIX)


def default_model_cache_dir() -> Path:
    """Where converted local models live (shared by every server on this machine)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sftpilot" / "local-models"


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs; see ``python -m deploy.local.tuning_server --help``."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8090
    project: str | None = None
    """When set, requests for another project get 403 PERMISSION_DENIED (as on Vertex)."""
    location: str | None = None
    """When set, requests for another location get 400 INVALID_ARGUMENT."""
    quota: int = 1
    quota_mode: QuotaMode = QuotaMode.REJECT
    refuse_label_filter: bool = False
    """Answer 400 INVALID_ARGUMENT to a list filter on ``labels.*`` (a Vertex that refuses it)."""
    model_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MODEL_MAP))
    default_local_model: str = "smollm2-135m"
    """Local model for any other ``gemini-*`` base model name."""
    model_cache_dir: Path = field(default_factory=default_model_cache_dir)
    default_epochs: int = 3
    """Epochs when the job does not say (Vertex picks a default from the dataset size)."""
    default_adapter_size: str = "ADAPTER_SIZE_EIGHT"
    batch_size: int = 4
    max_seq_len: int = 512
    worker_threads: int | None = None
    """Torch threads per training worker (None = every core)."""
    max_restarts: int = 3
    """A job interrupted by more server restarts than this ends FAILED instead of starting again."""
    poll_interval_seconds: float = 0.2
    cancel_grace_seconds: float = 30.0
    """After SIGTERM, a worker that has not stopped within this time is killed."""
    operation_polls: int = 1
    """Polls an undeploy/delete operation answers ``done: false`` before it finishes (0 = done at
    once). The change takes effect when the operation finishes, as on Vertex, where these
    operations run for minutes."""
    versioned_model_delete: VersionedDelete = VersionedDelete.REJECT

    def local_model_for(self, base_model: str) -> str | None:
        """The local model that stands in for ``base_model``, or None when it is not tunable."""
        name = normalize_base_model(base_model)
        if name in self.model_map:
            return self.model_map[name]
        if name.startswith("gemini-"):
            return self.default_local_model
        return None
