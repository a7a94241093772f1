"""Job lifecycle: validation, the concurrency quota, training worker processes, results.

States follow Vertex AI::

    create -> PENDING (with tuningJobState WAITING_FOR_QUOTA when the quota is full and
              --quota-mode queue: held until a slot frees, then it starts)
    PENDING -> RUNNING (tuningJobState PROCESSING_DATASET, then TUNING)
    RUNNING -> SUCCEEDED | FAILED | CANCELLING -> CANCELLED (or SUCCEEDED if it finished anyway)

Training never runs in a request thread: each started job gets a supervisor thread that fetches
the dataset, spawns ``deploy.local.trainer.worker`` as a subprocess (through :mod:`.launch`, so
the worker dies with the server), tails its ``progress.jsonl`` into the job, and turns its
``result.json`` / ``error.json`` into the end state, the tuned model and its endpoints.

Restart policy: state lives on disk. When the server starts, a job that was RUNNING is trained
again from scratch (a fresh work folder; it stays RUNNING, because job states never move
backwards) unless it has already been interrupted ``max_restarts`` times, in which case it ends
FAILED. A job that was CANCELLING ends CANCELLED. QUEUED and PENDING jobs simply start. If the
dataset can no longer be read, the restarted job ends FAILED with the read error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.local.tuning_server.config import ADAPTER_SIZE_TO_RANK, QuotaMode, ServerConfig
from deploy.local.tuning_server.datasets import DatasetFetchError, fetch_dataset
from deploy.local.tuning_server.resources import (
    ACTIVE_STATES,
    ENDED_STATES,
    Deployment,
    EndpointDeployment,
    ModelCheckpoint,
    StoredEndpoint,
    StoredJob,
    StoredModel,
    TrainingSettings,
)
from deploy.local.tuning_server.store import StateStore
from deploy.local.tuning_server.wire import (
    JSON,
    RPC_CANCELLED,
    RPC_FAILED_PRECONDITION,
    RPC_INTERNAL,
    RPC_INVALID_ARGUMENT,
    ApiError,
    failed_precondition,
    int64,
    invalid_argument,
    now_rfc3339,
)

log = logging.getLogger("sftpilot.tuning_server")

REPO_ROOT = Path(__file__).resolve().parents[3]
LAUNCHER_MODULE = "deploy.local.tuning_server.launch"
BASE_MODEL_LABEL = "google-vertex-llm-tuning-base-model-id"

_UNSUPPORTED_SPECS = (
    "preferenceOptimizationSpec",
    "distillationSpec",
    "reinforcementTuningSpec",
    "fullFineTuningSpec",
    "partnerModelTuningSpec",
    "veoTuningSpec",
    "veoLoraTuningSpec",
)
_MAX_LABELS = 64
_MAX_LABEL_CHARS = 64
_MAX_DISPLAY_NAME_CHARS = 128
_MAX_EPOCHS = 100


class _Abandon(Exception):
    """The job was removed, reset or forced to another state: stop supervising it quietly."""


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    work_dir: Path
    terminated_at: float | None = None


class JobRunner:
    """Owns every state change of every job (request threads and supervisors alike)."""

    def __init__(self, config: ServerConfig, store: StateStore) -> None:
        self.config = config
        self.store = store
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._supervisors: dict[str, threading.Thread] = {}
        self._workers: dict[str, _Worker] = {}
        self._job_events: dict[str, threading.Event] = {}
        self._scheduler: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Apply the restart policy to what is on disk, then start scheduling."""
        self._recover()
        self._scheduler = threading.Thread(target=self._schedule_loop, name="job-scheduler", daemon=True)
        self._scheduler.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop scheduling and terminate running workers; their jobs stay RUNNING on disk."""
        self._stopping.set()
        self._wakeup.set()
        for event in list(self._job_events.values()):
            event.set()
        self._terminate_all_workers(timeout)
        for thread in list(self._supervisors.values()):
            thread.join(timeout=timeout)
        if self._scheduler is not None:
            self._scheduler.join(timeout=timeout)

    def reset(self) -> None:
        """Forget everything (test control): kill workers, delete all jobs, models, endpoints."""
        with self.store.lock:
            self.store.wipe()
        for event in list(self._job_events.values()):
            event.set()
        self._terminate_all_workers(timeout=10.0)
        for thread in list(self._supervisors.values()):
            thread.join(timeout=10.0)
        with self.store.lock:
            self.store.wipe()  # anything a supervisor wrote while stopping

    # --- requests --------------------------------------------------------------------------

    def create_job(self, parent: str, body: JSON) -> StoredJob:
        """Validate a create request (normalised camelCase) and admit it under the quota."""
        for key in _UNSUPPORTED_SPECS:
            if key in body:
                raise invalid_argument(f"{key} is not supported: the local tuning server does supervised tuning only.")
        init_adapter: str | None = None
        if body.get("preTunedModel") is not None:
            # Continuous tuning starts from the parent checkpoint's adapter, on the parent's base model.
            parent_base, init_adapter = self._pre_tuned(body["preTunedModel"])
            body = {**body, "baseModel": parent_base}
        base_model = body.get("baseModel")
        if not isinstance(base_model, str) or not base_model:
            raise invalid_argument("baseModel is required.")
        local_model = self.config.local_model_for(base_model)
        if local_model is None:
            supported = ", ".join(sorted(self.config.model_map))
            raise invalid_argument(
                f"Base model {base_model} is not supported for supervised tuning. Supported: {supported} "
                "(or any other gemini-* name)."
            )
        spec = body.get("supervisedTuningSpec")
        if not isinstance(spec, dict):
            raise invalid_argument("supervisedTuningSpec is required.")
        training_uri = spec.get("trainingDatasetUri")
        if not isinstance(training_uri, str) or not training_uri:
            raise invalid_argument("supervisedTuningSpec.trainingDatasetUri is required.")
        validation_uri = spec.get("validationDatasetUri")
        if validation_uri is not None and (not isinstance(validation_uri, str) or not validation_uri):
            raise invalid_argument("supervisedTuningSpec.validationDatasetUri must be a non-empty string.")
        settings = dataclasses.replace(self._training_settings(local_model, spec), init_adapter_dir=init_adapter)
        labels = _check_labels(body.get("labels"))
        display_name = body.get("tunedModelDisplayName") or ""
        if not isinstance(display_name, str) or len(display_name) > _MAX_DISPLAY_NAME_CHARS:
            raise invalid_argument("tunedModelDisplayName must be a string of at most 128 characters.")
        description = body.get("description") or ""
        if not isinstance(description, str):
            raise invalid_argument("description must be a string.")
        encryption = body.get("encryptionSpec")
        if encryption is not None and not (isinstance(encryption, dict) and encryption.get("kmsKeyName")):
            raise invalid_argument("encryptionSpec.kmsKeyName is required when encryptionSpec is set.")
        service_account = body.get("serviceAccount")
        if service_account is not None and not isinstance(service_account, str):
            raise invalid_argument("serviceAccount must be a string.")

        with self.store.lock:
            active = sum(1 for job in self.store.jobs.values() if _holds_slot(job))
            queued = any(_waits_for_quota(job) for job in self.store.jobs.values())
            full = active >= self.config.quota or queued
            if full and self.config.quota_mode is QuotaMode.REJECT:
                raise ApiError(
                    429,
                    f"The number of concurrent tuning jobs ({active}) has reached the quota limit "
                    f"({self.config.quota}) for {parent}. Retry after a running job ends.",
                    "RESOURCE_EXHAUSTED",
                )
            job_id = self.store.new_id()
            now = now_rfc3339()
            job = StoredJob(
                job_id=job_id,
                seq=self.store.next_seq(),
                name=f"{parent}/tuningJobs/{job_id}",
                # Vertex may accept a job over the concurrent-job quota and hold it PENDING with
                # tuningJobState=TUNING_JOB_STATE_WAITING_FOR_QUOTA instead of answering 429:
                # https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs#TuningJobState
                state="JOB_STATE_PENDING",
                tuning_job_state=WAITING_FOR_QUOTA if full else None,
                base_model=base_model,
                training_dataset_uri=training_uri,
                validation_dataset_uri=validation_uri,
                spec=spec,
                settings=_settings_dict(settings),
                create_time=now,
                update_time=now,
                tuned_model_display_name=display_name,
                description=description,
                labels=labels,
                encryption_spec=encryption,
                service_account=service_account,
            )
            self.store.save_job(job)
        self._wakeup.set()
        return job

    def _pre_tuned(self, pre_tuned: Any) -> tuple[str, str]:
        """(base model, adapter dir) of ``preTunedModel {tunedModelName, checkpointId}``."""
        if not isinstance(pre_tuned, dict) or not isinstance(pre_tuned.get("tunedModelName"), str):
            raise invalid_argument("preTunedModel.tunedModelName is required.")
        name = pre_tuned["tunedModelName"]
        model_id = name.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        with self.store.lock:
            model = self.store.models.get(model_id)
            if model is None:
                raise invalid_argument(f"preTunedModel.tunedModelName {name} is not a tuned model of this server.")
            checkpoint_id = pre_tuned.get("checkpointId")
            known = {str(c.get("checkpoint_id")) for c in model.checkpoints}
            if checkpoint_id is not None and str(checkpoint_id) not in known:
                raise invalid_argument(f"Checkpoint {checkpoint_id} of {name} does not exist (has {sorted(known)}).")
            checkpoint = model.checkpoint(None if checkpoint_id is None else str(checkpoint_id))
            return model.base_model, checkpoint.adapter_dir

    def cancel_job(self, job_id: str) -> None:
        """Cancel: QUEUED/PENDING end at once; RUNNING goes CANCELLING and its worker gets SIGTERM."""
        with self.store.lock:
            job = self.store.jobs[job_id]
            if job.state in {"JOB_STATE_QUEUED", "JOB_STATE_PENDING"}:
                self._end(job, "JOB_STATE_CANCELLED", _cancelled_error())
            elif job.state == "JOB_STATE_RUNNING":
                job.state = "JOB_STATE_CANCELLING"
                job.update_time = now_rfc3339()
                self.store.save_job(job)
            elif job.state == "JOB_STATE_CANCELLING":
                return
            else:
                raise failed_precondition(f"Cannot cancel tuning job {job.name} in state {job.state}.")
        self._job_event(job_id).set()
        self._wakeup.set()

    def force_state(self, job_id: str, state: str, error: JSON | None) -> StoredJob:
        """Test control: put a job into any state but SUCCEEDED (which needs a trained model)."""
        allowed = {
            "JOB_STATE_QUEUED",
            "JOB_STATE_PENDING",
            "JOB_STATE_RUNNING",
            "JOB_STATE_CANCELLING",
            "JOB_STATE_FAILED",
            "JOB_STATE_CANCELLED",
            "JOB_STATE_EXPIRED",
            "JOB_STATE_PAUSED",
        }
        if state not in allowed:
            raise invalid_argument(f"state must be one of {', '.join(sorted(allowed))}.")
        with self.store.lock:
            job = self.store.jobs[job_id]
            if state in ENDED_STATES:
                self._end(job, state, error)
            else:
                job.state = state
                job.update_time = now_rfc3339()
                if error is not None:
                    job.error = error
                self.store.save_job(job)
        self._job_event(job_id).set()
        self._wakeup.set()
        return job

    # --- validation helpers ----------------------------------------------------------------

    def _training_settings(self, local_model: str, spec: JSON) -> TrainingSettings:
        hyper = spec.get("hyperParameters") or {}
        if not isinstance(hyper, dict):
            raise invalid_argument("supervisedTuningSpec.hyperParameters must be an object.")
        if hyper.get("learningRate") is not None:
            raise invalid_argument(
                "hyperParameters.learningRate is only supported for open models; use learningRateMultiplier."
            )
        if hyper.get("batchSize") is not None:
            raise invalid_argument("hyperParameters.batchSize is only supported for open models.")
        tuning_mode = spec.get("tuningMode")
        if tuning_mode not in (None, "TUNING_MODE_UNSPECIFIED", "TUNING_MODE_PEFT_ADAPTER"):
            raise invalid_argument(f"tuningMode {tuning_mode} is not supported for Gemini models.")
        epochs = _int_field(hyper.get("epochCount"), "hyperParameters.epochCount", 1, _MAX_EPOCHS)
        adapter_size = hyper.get("adapterSize") or "ADAPTER_SIZE_UNSPECIFIED"
        if adapter_size == "ADAPTER_SIZE_UNSPECIFIED":
            adapter_size = self.config.default_adapter_size
        if adapter_size not in ADAPTER_SIZE_TO_RANK:
            raise invalid_argument(
                f"hyperParameters.adapterSize {adapter_size!r} is invalid; use one of "
                f"{', '.join(ADAPTER_SIZE_TO_RANK)}."
            )
        multiplier = hyper.get("learningRateMultiplier")
        if multiplier is None:
            multiplier = 1.0
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) or not multiplier > 0:
            raise invalid_argument("hyperParameters.learningRateMultiplier must be a number > 0.")
        export_last = spec.get("exportLastCheckpointOnly", False)
        if not isinstance(export_last, bool):
            raise invalid_argument("supervisedTuningSpec.exportLastCheckpointOnly must be a boolean.")
        return TrainingSettings(
            local_model=local_model,
            epochs=epochs if epochs is not None else self.config.default_epochs,
            lora_rank=ADAPTER_SIZE_TO_RANK[adapter_size],
            learning_rate_multiplier=float(multiplier),
            export_last_checkpoint_only=export_last,
        )

    # --- scheduling ------------------------------------------------------------------------

    def _recover(self) -> None:
        with self.store.lock:
            for job in list(self.store.jobs.values()):
                if job.state not in {"JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"}:
                    continue
                _kill_orphan_worker(job, self.store.job_dir(job.job_id))
                if job.state == "JOB_STATE_CANCELLING":
                    self._end(job, "JOB_STATE_CANCELLED", _cancelled_error())
                elif job.attempt > self.config.max_restarts:
                    self._end(
                        job,
                        "JOB_STATE_FAILED",
                        {
                            "code": RPC_INTERNAL,
                            "message": f"Training was interrupted by {job.attempt} server restarts; giving up.",
                        },
                    )
                else:
                    log.info("job %s was RUNNING at shutdown: training it again from scratch", job.job_id)
                    job.worker_pid = None
                    job.completed_steps = 0
                    job.completed_epochs = 0
                    job.total_steps = None
                    job.step_metrics = []
                    job.tuning_job_state = "TUNING_JOB_STATE_WAITING_FOR_CAPACITY"
                    job.update_time = now_rfc3339()
                    self.store.save_job(job)

    def _schedule_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._schedule_once()
            except Exception:  # pragma: no cover - keep scheduling whatever happens
                log.exception("scheduler iteration failed")
            self._wakeup.wait(timeout=1.0)
            self._wakeup.clear()

    def _schedule_once(self) -> None:
        with self.store.lock:
            jobs = sorted(self.store.jobs.values(), key=lambda job: job.seq)
            active = sum(1 for job in jobs if _holds_slot(job))
            for job in jobs:
                if (job.state == "JOB_STATE_QUEUED" or _waits_for_quota(job)) and active < self.config.quota:
                    job.state = "JOB_STATE_PENDING"
                    job.tuning_job_state = None
                    job.update_time = now_rfc3339()
                    self.store.save_job(job)
                    active += 1
            for job in jobs:
                if job.state not in {"JOB_STATE_PENDING", "JOB_STATE_RUNNING"} or _waits_for_quota(job):
                    continue
                thread = self._supervisors.get(job.job_id)
                if thread is not None and thread.is_alive():
                    continue
                thread = threading.Thread(
                    target=self._supervise, args=(job.job_id,), name=f"job-{job.job_id}", daemon=True
                )
                self._supervisors[job.job_id] = thread
                thread.start()

    # --- supervision of one job ------------------------------------------------------------

    def _supervise(self, job_id: str) -> None:
        try:
            self._run_job(job_id)
        except _Abandon:
            pass
        except Exception as error:
            log.exception("supervising job %s failed", job_id)
            if not self._stopping.is_set():
                self._fail(job_id, RPC_INTERNAL, f"Internal error in the local tuning server: {error}")
        finally:
            self._workers.pop(job_id, None)
            self._wakeup.set()

    def _run_job(self, job_id: str) -> None:
        with self.store.lock:
            job = self._job(job_id, {"JOB_STATE_PENDING", "JOB_STATE_RUNNING"})
            job.attempt += 1
            attempt = job.attempt
            now = now_rfc3339()
            job.state = "JOB_STATE_RUNNING"
            job.start_time = job.start_time or now
            job.tuning_job_state = "TUNING_JOB_STATE_PROCESSING_DATASET"
            job.update_time = now
            self.store.save_job(job)
            settings = job.training
            training_uri = job.training_dataset_uri
            validation_uri = job.validation_dataset_uri
        work_dir = self.store.job_dir(job_id) / f"attempt-{attempt}"
        shutil.rmtree(work_dir, ignore_errors=True)
        data_dir = work_dir / "data"
        output_dir = work_dir / "output"
        output_dir.mkdir(parents=True)

        try:
            train_path = fetch_dataset(training_uri, data_dir / "train.jsonl", self.config.project)
            validation_path = (
                fetch_dataset(validation_uri, data_dir / "validation.jsonl", self.config.project, "validation")
                if validation_uri
                else None
            )
        except DatasetFetchError as error:
            self._fail(job_id, RPC_INVALID_ARGUMENT, str(error))
            return
        problem = _dataset_problem(train_path, "training") or (
            _dataset_problem(validation_path, "validation") if validation_path else None
        )
        if problem is not None:
            self._fail(job_id, RPC_INVALID_ARGUMENT, f"Dataset validation failed: {problem}")
            return
        self._check_cancel(job_id)

        try:
            from deploy.local.trainer.models import resolve_model_dir  # noqa: PLC0415
            from deploy.local.trainer.spec import TrainRequest  # noqa: PLC0415 - torch-free, but lazy

            model_dir = resolve_model_dir(settings.local_model, self.config.model_cache_dir)
            request = TrainRequest(
                model_dir=model_dir,
                train_path=train_path,
                validation_path=validation_path,
                output_dir=output_dir,
                epochs=settings.epochs,
                lora_rank=settings.lora_rank,
                learning_rate_multiplier=settings.learning_rate_multiplier,
                batch_size=self.config.batch_size,
                max_seq_len=self.config.max_seq_len,
                num_threads=self.config.worker_threads,
                init_adapter_dir=(
                    self.store.state_dir / settings.init_adapter_dir if settings.init_adapter_dir else None
                ),
            )
        except (ImportError, ValueError, OSError, RuntimeError) as error:
            # UnknownLocalModelError / LocalModelUnavailableError / InvalidTrainRequestError
            self._fail(job_id, RPC_FAILED_PRECONDITION, f"Cannot prepare local model {settings.local_model}: {error}")
            return
        self._check_cancel(job_id)

        request_path = work_dir / "request.json"
        request_path.write_text(request.to_json(), encoding="utf-8")
        log_file = (work_dir / "worker.log").open("wb")
        env = dict(os.environ)
        env["SFTPILOT_TUNING_SERVER_PID"] = str(os.getpid())
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", LAUNCHER_MODULE, str(request_path)],
                cwd=str(REPO_ROOT),
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log_file.close()
        self._workers[job_id] = _Worker(process=process, work_dir=work_dir)
        with self.store.lock:
            job = self._job(job_id, {"JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"}, process)
            job.worker_pid = process.pid
            job.tuning_job_state = "TUNING_JOB_STATE_TUNING"
            job.update_time = now_rfc3339()
            self.store.save_job(job)
        self._watch(job_id, process, output_dir, settings)

    def _watch(
        self, job_id: str, process: subprocess.Popen[bytes], output_dir: Path, settings: TrainingSettings
    ) -> None:
        progress = _ProgressTail(output_dir / "progress.jsonl")
        event = self._job_event(job_id)
        terminated_at: float | None = None
        stats_seen = False
        while True:
            if not stats_seen:
                stats_seen = self._apply_data_stats(job_id, output_dir, process)
            self._apply_progress(job_id, progress.read_new(), settings, process)
            return_code = process.poll()
            if return_code is not None:
                break
            if self._stopping.is_set():
                raise _Abandon
            with self.store.lock:
                job = self._job(job_id, {"JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"}, process)
                cancelling = job.state == "JOB_STATE_CANCELLING"
            if cancelling and terminated_at is None:
                # Before the first step there is nothing to stop gracefully: don't wait for the
                # worker to finish importing torch just to cancel.
                started = stats_seen or progress.offset > 0
                process.send_signal(signal.SIGTERM if started else signal.SIGKILL)
                terminated_at = time.monotonic()
            elif terminated_at is not None and time.monotonic() - terminated_at > self.config.cancel_grace_seconds:
                process.kill()
            event.wait(timeout=self.config.poll_interval_seconds)
            event.clear()
        if self._stopping.is_set():
            raise _Abandon
        self._apply_progress(job_id, progress.read_new(), settings, process)
        self._finish(job_id, return_code, output_dir, settings)

    def _apply_data_stats(self, job_id: str, output_dir: Path, process: subprocess.Popen[bytes]) -> bool:
        """Publish ``tuningDataStats`` as soon as the worker has read the dataset (as Vertex does)."""
        raw = _read_json_file(output_dir / "data_stats.json")
        if raw is None:
            return False
        from deploy.local.trainer.spec import DataStats  # noqa: PLC0415 - torch-free

        stats = DataStats.from_dict(raw)
        with self.store.lock:
            job = self._job(job_id, {"JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"}, process)
            job.tuning_data_stats = _data_stats(stats)
            job.total_steps = stats.step_count
            job.update_time = now_rfc3339()
            self.store.save_job(job)
        return True

    def _apply_progress(
        self, job_id: str, lines: list[JSON], settings: TrainingSettings, process: subprocess.Popen[bytes]
    ) -> None:
        if not lines:
            return
        with self.store.lock:
            job = self._job(job_id, {"JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"}, process)
            for line in lines:
                step = line.get("step")
                if not isinstance(step, int):
                    continue
                total = line.get("total_steps")
                if isinstance(total, int) and total > 0:
                    job.total_steps = total
                job.completed_steps = step
                if job.total_steps:
                    job.completed_epochs = min(settings.epochs, step * settings.epochs // job.total_steps)
                job.step_metrics.append(
                    {key: value for key, value in line.items() if key != "total_steps" and value is not None}
                )
            job.update_time = now_rfc3339()
            self.store.save_job(job)

    def _finish(self, job_id: str, return_code: int, output_dir: Path, settings: TrainingSettings) -> None:
        result_file = output_dir / "result.json"
        error_file = output_dir / "error.json"
        if return_code == 0 and result_file.is_file():
            self._succeed(job_id, result_file, output_dir, settings)
            return
        error = _read_json_file(error_file)
        code = str(error.get("code", "")) if error else ""
        message = str(error.get("message", "")) if error else ""
        if code == "CANCELLED":
            with self.store.lock:
                job = self._job(job_id, {"JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"})
                self._end(job, "JOB_STATE_CANCELLED", _cancelled_error())
        elif code == "DATASET_INVALID":
            self._fail(job_id, RPC_INVALID_ARGUMENT, f"Dataset validation failed: {message}")
        elif error is not None:
            self._fail(job_id, RPC_INTERNAL, f"Training failed: {message or code}")
        else:
            with self.store.lock:
                cancelling = self.store.jobs.get(job_id) is not None and (
                    self.store.jobs[job_id].state == "JOB_STATE_CANCELLING"
                )
            if cancelling:  # killed after the grace period
                with self.store.lock:
                    job = self._job(job_id, {"JOB_STATE_CANCELLING"})
                    self._end(job, "JOB_STATE_CANCELLED", _cancelled_error())
                return
            tail = _log_tail(output_dir.parent / "worker.log")
            self._fail(job_id, RPC_INTERNAL, f"Training worker exited with status {return_code}: {tail}")

    def _succeed(self, job_id: str, result_file: Path, output_dir: Path, settings: TrainingSettings) -> None:
        from deploy.local.trainer.spec import TrainResult  # noqa: PLC0415

        result = TrainResult.from_json(result_file.read_text(encoding="utf-8"))
        if not result.checkpoints:
            self._fail(job_id, RPC_INTERNAL, "Training finished without writing a checkpoint.")
            return
        checkpoints = list(result.checkpoints)
        if settings.export_last_checkpoint_only:
            for dropped in checkpoints[:-1]:
                shutil.rmtree(_absolute(dropped.adapter_dir, output_dir), ignore_errors=True)
            checkpoints = checkpoints[-1:]
        with self.store.lock:
            job = self._job(job_id, {"JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"})
            job.tuning_job_state = "TUNING_JOB_STATE_POST_PROCESSING"
            parent = job.name.split("/tuningJobs/")[0]
            now = now_rfc3339()
            model_id = self.store.new_id()
            model_name = f"{parent}/models/{model_id}"
            display_name = job.tuned_model_display_name or f"tuned-{job.base_model}-{job.job_id}"
            labels = dict(job.labels)
            labels[BASE_MODEL_LABEL] = job.base_model.removeprefix("publishers/google/models/").replace(".", "-")
            model = StoredModel(
                model_id=model_id,
                name=model_name,
                display_name=display_name,
                description=job.description,
                labels=labels,
                job_name=job.name,
                base_model=job.base_model,
                local_model=settings.local_model,
                checkpoints=[_model_checkpoint(c, output_dir, self.store.state_dir) for c in checkpoints],
                deployments=[],
                create_time=now,
                update_time=now,
            )
            tuned_checkpoints: list[JSON] = []
            final_endpoint = ""
            for checkpoint in checkpoints:
                endpoint_id = self.store.new_id()
                endpoint_name = f"{parent}/endpoints/{endpoint_id}"
                deployed_model_id = self.store.new_id()
                self.store.save_endpoint(
                    StoredEndpoint(
                        endpoint_id=endpoint_id,
                        name=endpoint_name,
                        display_name=f"{display_name}-checkpoint-{checkpoint.checkpoint_id}",
                        labels=dict(job.labels),
                        deployed_models=[
                            _asdict(
                                EndpointDeployment(
                                    deployed_model_id=deployed_model_id,
                                    model=model.versioned_name,
                                    checkpoint_id=checkpoint.checkpoint_id,
                                    create_time=now,
                                )
                            )
                        ],
                        create_time=now,
                        update_time=now,
                    )
                )
                model.deployments.append(
                    _asdict(Deployment(endpoint_name, deployed_model_id, checkpoint.checkpoint_id))
                )
                tuned_checkpoints.append(
                    {
                        "checkpointId": checkpoint.checkpoint_id,
                        "epoch": int64(checkpoint.epoch),
                        "step": int64(checkpoint.step),
                        "endpoint": endpoint_name,
                    }
                )
                final_endpoint = endpoint_name
            self.store.save_model(model)
            job.tuned_model = {"model": model.versioned_name, "endpoint": final_endpoint}
            if not settings.export_last_checkpoint_only:
                job.tuned_model["checkpoints"] = tuned_checkpoints
            job.tuning_data_stats = _data_stats(result.data_stats)
            job.completed_epochs = settings.epochs
            self._end(job, "JOB_STATE_SUCCEEDED", None)

    # --- small helpers ---------------------------------------------------------------------

    def _job(self, job_id: str, expected: set[str], process: subprocess.Popen[bytes] | None = None) -> StoredJob:
        """The job, if it is still in one of ``expected``; else stop supervising (and the worker)."""
        job = self.store.jobs.get(job_id)
        if job is None or job.state not in expected:
            if process is not None and process.poll() is None:
                process.kill()
            raise _Abandon
        return job

    def _check_cancel(self, job_id: str) -> None:
        with self.store.lock:
            job = self._job(job_id, {"JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"})
            if job.state == "JOB_STATE_CANCELLING":
                self._end(job, "JOB_STATE_CANCELLED", _cancelled_error())
                raise _Abandon

    def _fail(self, job_id: str, rpc_code: int, message: str) -> None:
        with self.store.lock:
            job = self.store.jobs.get(job_id)
            if job is None or job.state in ENDED_STATES:
                return
            self._end(job, "JOB_STATE_FAILED", {"code": rpc_code, "message": message})

    def _end(self, job: StoredJob, state: str, error: JSON | None) -> None:
        now = now_rfc3339()
        job.state = state
        job.error = error
        job.end_time = now
        job.update_time = now
        job.worker_pid = None
        if state != "JOB_STATE_SUCCEEDED":
            job.tuning_job_state = None
        else:
            job.tuning_job_state = "TUNING_JOB_STATE_POST_PROCESSING"
        self.store.save_job(job)
        self._wakeup.set()

    def _job_event(self, job_id: str) -> threading.Event:
        return self._job_events.setdefault(job_id, threading.Event())

    def _terminate_all_workers(self, timeout: float) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


class _ProgressTail:
    """Reads the complete lines appended to ``progress.jsonl`` since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read_new(self) -> list[JSON]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        lines: list[JSON] = []
        for raw in chunk[: end + 1].splitlines():
            try:
                parsed = json.loads(raw)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                lines.append(parsed)
        return lines


WAITING_FOR_QUOTA = "TUNING_JOB_STATE_WAITING_FOR_QUOTA"


def _waits_for_quota(job: StoredJob) -> bool:
    """Accepted over the quota (``--quota-mode queue``): PENDING and not started yet."""
    return job.state == "JOB_STATE_PENDING" and job.tuning_job_state == WAITING_FOR_QUOTA


def _holds_slot(job: StoredJob) -> bool:
    """Counts against ``--quota``: an active job that is not itself waiting for a slot."""
    return job.state in ACTIVE_STATES and not _waits_for_quota(job)


def _settings_dict(settings: TrainingSettings) -> JSON:
    return _asdict(settings)


def _asdict(value: Any) -> JSON:
    import dataclasses  # noqa: PLC0415

    result: JSON = dataclasses.asdict(value)
    return result


def _model_checkpoint(checkpoint: Any, output_dir: Path, state_dir: Path) -> JSON:
    """A trainer ``Checkpoint`` as stored on the model (adapter path relative to the state dir)."""
    absolute = _absolute(checkpoint.adapter_dir, output_dir).resolve()
    try:
        stored = str(absolute.relative_to(state_dir.resolve()))
    except ValueError:
        stored = str(absolute)
    return _asdict(
        ModelCheckpoint(
            checkpoint_id=checkpoint.checkpoint_id, epoch=checkpoint.epoch, step=checkpoint.step, adapter_dir=stored
        )
    )


def _absolute(path: Path, output_dir: Path) -> Path:
    return path if path.is_absolute() else output_dir / path


def _data_stats(stats: Any) -> JSON:
    supervised: JSON = {
        "tuningDatasetExampleCount": int64(stats.example_count),
        "tuningStepCount": int64(stats.step_count),
        "totalBillableTokenCount": int64(stats.total_billable_tokens),
        "totalTuningCharacterCount": int64(stats.total_tuning_characters),
        "totalTruncatedExampleCount": int64(stats.truncated_example_count),
        "truncatedExampleIndices": [int64(index) for index in stats.truncated_example_indices],
    }
    dropped = int(getattr(stats, "dropped_example_count", 0) or 0)
    if dropped:
        supervised["droppedExampleReasons"] = [
            f"{dropped} example(s) had every model-turn token cut off by the maximum sequence length"
        ]
    return {"supervisedTuningDataStats": supervised}


def _dataset_problem(path: Path, role: str) -> str | None:
    """Why a dataset cannot be trained on (first bad line, or no examples), before a worker starts.

    Vertex validates the dataset before tuning; doing it here too makes a broken file fail in
    milliseconds instead of after a worker process has loaded torch.
    """
    from deploy.local.trainer.dataset import read_conversations  # noqa: PLC0415 - torch-free
    from deploy.local.trainer.errors import DatasetError  # noqa: PLC0415

    count = 0
    try:
        for _ in read_conversations(path):
            count += 1
    except DatasetError as error:
        return f"{role} dataset: {error}"
    except (OSError, UnicodeDecodeError) as error:
        return f"{role} dataset cannot be read: {error}"
    if count == 0:
        return f"{role} dataset contains no examples"
    return None


def _cancelled_error() -> JSON:
    return {"code": RPC_CANCELLED, "message": "CANCELED: the tuning job was cancelled on request."}


def _check_labels(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid_argument("labels must be a map of strings.")
    if len(raw) > _MAX_LABELS:
        raise invalid_argument(f"At most {_MAX_LABELS} labels are allowed.")
    labels: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise invalid_argument("labels must be a map of strings.")
        if not key or not key[0].isalpha() or not key[0].islower() or not _label_chars_ok(key):
            raise invalid_argument(
                f"Label key {key!r} is invalid: it must start with a lowercase letter and contain only "
                "lowercase letters, digits, '_' and '-' (at most 64 characters)."
            )
        if not _label_chars_ok(value):
            raise invalid_argument(
                f"Label value {value!r} for key {key!r} is invalid: only lowercase letters, digits, '_' "
                "and '-' (at most 64 characters)."
            )
        labels[key] = value
    return labels


def _label_chars_ok(text: str) -> bool:
    return len(text) <= _MAX_LABEL_CHARS and all(
        char.isdigit() or char in "_-" or (char.isalpha() and not char.isupper()) for char in text
    )


def _int_field(raw: Any, name: str, minimum: int, maximum: int) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise invalid_argument(f"{name} must be an integer.")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise invalid_argument(f"{name} must be an integer, got {raw!r}.") from None
    if isinstance(raw, float) and raw != value:
        raise invalid_argument(f"{name} must be an integer, got {raw!r}.")
    if not minimum <= value <= maximum:
        raise invalid_argument(f"{name} must be between {minimum} and {maximum}, got {value}.")
    return value


def _read_json_file(path: Path) -> JSON | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no worker log)"
    tail = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(tail) or "(empty worker log)"


def _kill_orphan_worker(job: StoredJob, job_dir: Path) -> None:
    """A worker left over from a crashed server: kill it, but only if it is really ours."""
    pid = job.worker_pid
    if not pid:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return
    if LAUNCHER_MODULE not in cmdline or str(job_dir) not in cmdline:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return
