"""Durable state: jobs, models and endpoints as JSON files under the state directory.

Layout::

    STATE_DIR/meta.json                 {"next_seq": N}
    STATE_DIR/jobs/{id}/job.json        one tuning job (+ its work folders beside it)
    STATE_DIR/models/{id}.json          one tuned model
    STATE_DIR/endpoints/{id}.json       one endpoint

Every write replaces the file atomically (write a temporary file, then rename), so a crash
never leaves half a resource. All access goes through one re-entrant lock: the store is small
and the server's work is elsewhere (training runs in worker processes).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
from pathlib import Path

from deploy.local.tuning_server.resources import StoredEndpoint, StoredJob, StoredModel
from deploy.local.tuning_server.wire import JSON


class StateStore:
    """In-memory maps backed by one file per resource."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.lock = threading.RLock()
        self.jobs: dict[str, StoredJob] = {}
        self.models: dict[str, StoredModel] = {}
        self.endpoints: dict[str, StoredEndpoint] = {}
        self._next_seq = 1
        for folder in (self.jobs_dir, self.models_dir, self.endpoints_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._load()

    @property
    def jobs_dir(self) -> Path:
        """Folder of the job folders."""
        return self.state_dir / "jobs"

    @property
    def models_dir(self) -> Path:
        """Folder of the model files."""
        return self.state_dir / "models"

    @property
    def endpoints_dir(self) -> Path:
        """Folder of the endpoint files."""
        return self.state_dir / "endpoints"

    def job_dir(self, job_id: str) -> Path:
        """The folder of one job: ``job.json`` plus a work folder per training attempt."""
        return self.jobs_dir / job_id

    def new_id(self) -> str:
        """A fresh numeric id, like Vertex's 19-digit resource ids."""
        with self.lock:
            while True:
                candidate = str(10**18 + secrets.randbelow(9 * 10**18))
                if candidate not in self.jobs and candidate not in self.models and candidate not in self.endpoints:
                    return candidate

    def next_seq(self) -> int:
        """The next creation sequence number (persisted, so ordering survives restarts)."""
        with self.lock:
            seq = self._next_seq
            self._next_seq += 1
            _write_json(self.state_dir / "meta.json", {"next_seq": self._next_seq})
            return seq

    def save_job(self, job: StoredJob) -> None:
        """Insert or replace a job."""
        with self.lock:
            self.jobs[job.job_id] = job
            _write_json(self.job_dir(job.job_id) / "job.json", job.to_dict())

    def save_model(self, model: StoredModel) -> None:
        """Insert or replace a model."""
        with self.lock:
            self.models[model.model_id] = model
            _write_json(self.models_dir / f"{model.model_id}.json", model.to_dict())

    def save_endpoint(self, endpoint: StoredEndpoint) -> None:
        """Insert or replace an endpoint."""
        with self.lock:
            self.endpoints[endpoint.endpoint_id] = endpoint
            _write_json(self.endpoints_dir / f"{endpoint.endpoint_id}.json", endpoint.to_dict())

    def remove_model(self, model_id: str) -> None:
        """Forget a model (its adapter files are removed by the caller)."""
        with self.lock:
            self.models.pop(model_id, None)
            (self.models_dir / f"{model_id}.json").unlink(missing_ok=True)

    def remove_endpoint(self, endpoint_id: str) -> None:
        """Forget an endpoint."""
        with self.lock:
            self.endpoints.pop(endpoint_id, None)
            (self.endpoints_dir / f"{endpoint_id}.json").unlink(missing_ok=True)

    def wipe(self) -> None:
        """Delete every resource and file (the ``/__reset`` test control)."""
        with self.lock:
            self.jobs.clear()
            self.models.clear()
            self.endpoints.clear()
            for folder in (self.jobs_dir, self.models_dir, self.endpoints_dir):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True, exist_ok=True)

    def _load(self) -> None:
        meta = _read_json(self.state_dir / "meta.json")
        if meta is not None:
            self._next_seq = int(meta.get("next_seq", 1))
        for job_file in sorted(self.jobs_dir.glob("*/job.json")):
            data = _read_json(job_file)
            if data is not None:
                job = StoredJob.from_dict(data)
                self.jobs[job.job_id] = job
                self._next_seq = max(self._next_seq, job.seq + 1)
        for model_file in sorted(self.models_dir.glob("*.json")):
            data = _read_json(model_file)
            if data is not None:
                model = StoredModel.from_dict(data)
                self.models[model.model_id] = model
        for endpoint_file in sorted(self.endpoints_dir.glob("*.json")):
            data = _read_json(endpoint_file)
            if data is not None:
                endpoint = StoredEndpoint.from_dict(data)
                self.endpoints[endpoint.endpoint_id] = endpoint


def _write_json(path: Path, data: JSON) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


def _read_json(path: Path) -> JSON | None:
    """A state file, or None when it is missing or unreadable (a torn file is skipped, not fatal)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
