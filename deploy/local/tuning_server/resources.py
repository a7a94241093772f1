"""The server's resources (tuning jobs, models, endpoints) and their Vertex JSON views.

Each resource is a dataclass persisted as JSON on disk (see :mod:`.store`); ``to_resource()``
renders what Vertex AI would answer: camelCase keys, int64 as strings, unset fields omitted.
Fields that only the server needs (worker pid, adapter folders, ...) are never rendered.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TypeVar

from deploy.local.tuning_server.wire import JSON, drop_none, int64

ACTIVE_STATES = frozenset({"JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"})
"""States that hold one of the concurrent-job quota slots."""
ENDED_STATES = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})

_T = TypeVar("_T")


def _from_dict(cls: type[_T], data: JSON) -> _T:
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class TrainingSettings:
    """The hyper-parameters a job trains with, after defaults (what the worker receives)."""

    local_model: str
    epochs: int
    lora_rank: int
    learning_rate_multiplier: float
    export_last_checkpoint_only: bool
    init_adapter_dir: str | None = None
    """Continuous tuning: the parent checkpoint's adapter (relative to the state directory)."""


@dataclass
class StoredJob:
    """One tuning job."""

    job_id: str
    seq: int
    """Creation order; list pages are ordered newest first by it and tokens point into it."""
    name: str
    state: str
    base_model: str
    training_dataset_uri: str
    validation_dataset_uri: str | None
    spec: JSON
    """``supervisedTuningSpec`` as the client sent it (camelCase), echoed back."""
    settings: JSON
    """:class:`TrainingSettings` as a dict."""
    create_time: str
    update_time: str
    tuned_model_display_name: str = ""
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    encryption_spec: JSON | None = None
    service_account: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    tuning_job_state: str | None = None
    error: JSON | None = None
    tuned_model: JSON | None = None
    tuning_data_stats: JSON | None = None
    completed_steps: int = 0
    completed_epochs: int = 0
    total_steps: int | None = None
    step_metrics: list[JSON] = field(default_factory=list)
    attempt: int = 0
    """How many times training was started (a server restart starts a RUNNING job again)."""
    worker_pid: int | None = None

    @property
    def training(self) -> TrainingSettings:
        """Typed view of :attr:`settings`."""
        return _from_dict(TrainingSettings, self.settings)

    def to_dict(self) -> JSON:
        """Everything, for the state file."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: JSON) -> StoredJob:
        """Inverse of :meth:`to_dict` (unknown keys from newer versions are ignored)."""
        return _from_dict(cls, data)

    def to_resource(self) -> JSON:
        """The Vertex ``TuningJob`` JSON.

        Besides the standard fields, ``trainingMetrics`` (an extension of this server) carries
        the per-step metrics Vertex keeps in the job's experiment: ``train_total_loss``,
        ``train_fraction_of_correct_next_step_preds`` and ``eval_*``. google-genai drops it;
        raw readers such as :class:`shared.adapters.vertex.VertexTuningBackend` read it.
        """
        metadata: JSON | None = None
        if self.state not in {"JOB_STATE_QUEUED", "JOB_STATE_PENDING"}:
            metadata = {
                "completedEpochCount": int64(self.completed_epochs),
                "completedStepCount": int64(self.completed_steps),
            }
        metrics: JSON | None = None
        if self.step_metrics or self.total_steps is not None:
            metrics = drop_none(
                {
                    "totalStepCount": int64(self.total_steps),
                    "completedStepCount": int64(self.completed_steps),
                    "latest": self.step_metrics[-1] if self.step_metrics else None,
                    "steps": self.step_metrics,
                }
            )
        return drop_none(
            {
                "name": self.name,
                "tunedModelDisplayName": self.tuned_model_display_name or None,
                "description": self.description or None,
                "baseModel": self.base_model,
                "supervisedTuningSpec": self.spec,
                "state": self.state,
                "tuningJobState": self.tuning_job_state,
                "createTime": self.create_time,
                "startTime": self.start_time,
                "endTime": self.end_time,
                "updateTime": self.update_time,
                "error": self.error,
                "labels": dict(self.labels) if self.labels else None,
                "encryptionSpec": self.encryption_spec,
                "serviceAccount": self.service_account,
                "tunedModel": self.tuned_model,
                "tuningDataStats": self.tuning_data_stats,
                "tuningJobMetadata": metadata,
                "trainingMetrics": metrics,
            }
        )


@dataclass
class ModelCheckpoint:
    """One exported checkpoint of a tuned model."""

    checkpoint_id: str
    epoch: int
    step: int
    adapter_dir: str
    """Relative to the state directory."""


@dataclass
class Deployment:
    """A model (checkpoint) deployed on an endpoint."""

    endpoint: str
    deployed_model_id: str
    checkpoint_id: str


@dataclass
class StoredModel:
    """A tuned model (``models/{id}``, version 1)."""

    model_id: str
    name: str
    display_name: str
    description: str
    labels: dict[str, str]
    job_name: str
    base_model: str
    local_model: str
    checkpoints: list[JSON]
    """:class:`ModelCheckpoint` dicts, in epoch order; the last one is the default."""
    deployments: list[JSON]
    """:class:`Deployment` dicts."""
    create_time: str
    update_time: str

    @property
    def versioned_name(self) -> str:
        """``projects/../models/{id}@1`` (what ``tunedModel.model`` names)."""
        return f"{self.name}@1"

    def checkpoint(self, checkpoint_id: str | None) -> ModelCheckpoint:
        """The checkpoint with this id, or the default (last) one."""
        typed = [_from_dict(ModelCheckpoint, item) for item in self.checkpoints]
        for item in typed:
            if item.checkpoint_id == checkpoint_id:
                return item
        return typed[-1]

    @property
    def deployment_list(self) -> list[Deployment]:
        """Typed view of :attr:`deployments`."""
        return [_from_dict(Deployment, item) for item in self.deployments]

    def to_dict(self) -> JSON:
        """Everything, for the state file."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: JSON) -> StoredModel:
        """Inverse of :meth:`to_dict`."""
        return _from_dict(cls, data)

    def to_resource(self) -> JSON:
        """The Vertex ``Model`` JSON (the fields google-genai reads, plus a few realistic ones)."""
        checkpoints = [_from_dict(ModelCheckpoint, item) for item in self.checkpoints]
        return drop_none(
            {
                "name": self.name,
                "displayName": self.display_name,
                "description": self.description or None,
                "versionId": "1",
                "versionAliases": ["default"],
                "labels": dict(self.labels),
                "deployedModels": [
                    {
                        "endpoint": d.endpoint,
                        "deployedModelId": d.deployed_model_id,
                        "checkpointId": d.checkpoint_id,
                    }
                    for d in self.deployment_list
                ],
                "checkpoints": [
                    {"checkpointId": c.checkpoint_id, "epoch": int64(c.epoch), "step": int64(c.step)}
                    for c in checkpoints
                ],
                "defaultCheckpointId": checkpoints[-1].checkpoint_id if checkpoints else None,
                "createTime": self.create_time,
                "updateTime": self.update_time,
                "versionCreateTime": self.create_time,
                "versionUpdateTime": self.update_time,
            }
        )


@dataclass
class EndpointDeployment:
    """One deployed model on an endpoint (the endpoint's side of :class:`Deployment`)."""

    deployed_model_id: str
    model: str
    """``projects/../models/{id}@1``."""
    checkpoint_id: str
    create_time: str


@dataclass
class StoredEndpoint:
    """An endpoint serving zero or more deployed models (all traffic to the first one unless split)."""

    endpoint_id: str
    name: str
    display_name: str
    labels: dict[str, str]
    deployed_models: list[JSON]
    """:class:`EndpointDeployment` dicts."""
    create_time: str
    update_time: str
    traffic_split: dict[str, int] | None = None
    """Deployed model id -> percent, as set by an undeploy's ``trafficSplit``; None = all to the first."""

    @property
    def traffic(self) -> dict[str, int]:
        """The effective split over the models deployed now."""
        ids = [d.deployed_model_id for d in self.deployment_list]
        if self.traffic_split is not None:
            return {key: value for key, value in self.traffic_split.items() if key in ids}
        return {ids[0]: 100} if ids else {}

    @property
    def deployment_list(self) -> list[EndpointDeployment]:
        """Typed view of :attr:`deployed_models`."""
        return [_from_dict(EndpointDeployment, item) for item in self.deployed_models]

    def to_dict(self) -> JSON:
        """Everything, for the state file."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: JSON) -> StoredEndpoint:
        """Inverse of :meth:`to_dict`."""
        return _from_dict(cls, data)

    def to_resource(self) -> JSON:
        """The Vertex ``Endpoint`` JSON."""
        deployments = self.deployment_list
        return drop_none(
            {
                "name": self.name,
                "displayName": self.display_name,
                "labels": dict(self.labels) if self.labels else None,
                "deployedModels": [
                    {
                        "id": d.deployed_model_id,
                        "model": d.model,
                        "modelVersionId": "1",
                        "checkpointId": d.checkpoint_id,
                        "createTime": d.create_time,
                    }
                    for d in deployments
                ],
                "trafficSplit": self.traffic or None,
                "createTime": self.create_time,
                "updateTime": self.update_time,
            }
        )
