"""In-memory implementations of every port, for unit tests and benchmarks.

They follow the same contracts as the real adapters (the contract suites in ``tests/contract``
run against both), are thread-safe, count calls, and accept injected failures so tests can
exercise retry and crash paths without a network.

Example:
    >>> tuning = FakeTuningBackend(quota=1)
    >>> job = tuning.create_job(TuningJobSpec("gemini-2.5-flash", "gs://b/d.jsonl", "demo"))
    >>> _ = tuning.set_state(job.name, TuningState.SUCCEEDED)
    >>> tuning.get_job(job.name).has_ended
    True
"""

from __future__ import annotations

import base64
import copy
import io
import itertools
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import IO, TypeVar

from shared.claims import DELETE, EffectClaimStore, EffectDoc, Write
from shared.errors import (
    BlobNotFoundError,
    BlobReadError,
    InvalidArgumentError,
    NotFoundError,
    PublishError,
    QuotaExceededError,
    RecordNotFoundError,
)
from shared.ports import (
    BlobInfo,
    DeployedModelRef,
    EffectClaim,
    EndpointInfo,
    GenerationRequest,
    GenerationResult,
    JobPage,
    JobQuery,
    MetricSeries,
    ModelInfo,
    OutgoingEvent,
    QueryOrder,
    RecordMutation,
    SpendReservation,
    TunedCheckpoint,
    TuningJob,
    TuningJobSpec,
    unversioned_model_name,
)
from shared.records import JSON, JobRecord, utcnow
from shared.states import WAITING_FOR_QUOTA, TuningState, check_transition


class FailureScript:
    """Per-operation queues of exceptions to raise on the next calls (fault injection)."""

    def __init__(self) -> None:
        self._queued: dict[str, deque[BaseException]] = defaultdict(deque)
        self._lock = threading.Lock()

    def fail_next(self, operation: str, *errors: BaseException) -> None:
        """Raise these errors, in order, on the next calls of ``operation``."""
        with self._lock:
            self._queued[operation].extend(errors)

    def check(self, operation: str) -> None:
        """Raise the next scripted error for ``operation``, if any."""
        with self._lock:
            queue = self._queued.get(operation)
            error = queue.popleft() if queue else None
        if error is not None:
            raise error


# --- blob store --------------------------------------------------------------------------------


class _FailingReader(io.RawIOBase):
    """Yields ``fail_after`` bytes, then raises like a connection dropped mid-stream."""

    def __init__(self, data: bytes, fail_after: int, uri: str) -> None:
        self._data = data
        self._pos = 0
        self._fail_after = fail_after
        self._uri = uri

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._pos >= self._fail_after:
            raise BlobReadError(self._uri, "connection reset (injected)")
        end = min(self._pos + len(buffer), self._fail_after, len(self._data))
        chunk = self._data[self._pos : end]
        buffer[: len(chunk)] = chunk
        self._pos = end
        return len(chunk)


class FakeBlobStore:
    """Objects in a dict; generations increase monotonically like GCS."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], tuple[bytes, BlobInfo]] = {}
        self._generation = itertools.count(1_700_000_000_000_000)
        self._lock = threading.Lock()
        self.failures = FailureScript()
        self.fail_reads_after: dict[str, int] = {}
        """Object name -> byte offset after which reads raise BlobReadError."""

    def put(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream") -> int:
        """Test helper: store an object, return its generation."""
        return self.write_bytes(bucket, name, data, content_type)

    @contextmanager
    def _open(self, bucket: str, name: str, generation: int | None) -> Iterator[IO[bytes]]:
        self.failures.check("open_read")
        uri = f"gs://{bucket}/{name}"
        with self._lock:
            stored = self._objects.get((bucket, name))
        if stored is None or (generation is not None and stored[1].generation != generation):
            raise BlobNotFoundError(uri if generation is None else f"{uri}#{generation}")
        data = stored[0]
        if name in self.fail_reads_after:
            yield io.BufferedReader(_FailingReader(data, self.fail_reads_after[name], uri))
        else:
            yield io.BytesIO(data)

    def open_read(self, bucket: str, name: str, generation: int | None = None) -> AbstractContextManager[IO[bytes]]:
        """Stream an object (see :class:`shared.ports.BlobStore`)."""
        return self._open(bucket, name, generation)

    def read_bytes(self, bucket: str, name: str, max_bytes: int = 1 << 20) -> bytes | None:
        """Small object or None."""
        self.failures.check("read_bytes")
        with self._lock:
            stored = self._objects.get((bucket, name))
        if stored is None:
            return None
        if len(stored[0]) > max_bytes:
            raise BlobReadError(f"gs://{bucket}/{name}", f"larger than {max_bytes} bytes")
        return stored[0]

    def write_bytes(self, bucket: str, name: str, data: bytes, content_type: str) -> int:
        """Store and return the new generation."""
        self.failures.check("write_bytes")
        with self._lock:
            generation = next(self._generation)
            info = BlobInfo(bucket, name, generation, len(data), utcnow(), content_type)
            self._objects[(bucket, name)] = (bytes(data), info)
        return generation

    def stat(self, bucket: str, name: str) -> BlobInfo | None:
        """Metadata or None."""
        with self._lock:
            stored = self._objects.get((bucket, name))
        return None if stored is None else stored[1]

    def list(self, bucket: str, prefix: str) -> Iterator[BlobInfo]:
        """Objects under ``prefix`` in name order."""
        with self._lock:
            infos = [info for (b, n), (_, info) in self._objects.items() if b == bucket and n.startswith(prefix)]
        yield from sorted(infos, key=lambda i: i.name)


# --- job store ---------------------------------------------------------------------------------


T = TypeVar("T")


class FakeJobStore(EffectClaimStore):
    """Records in a dict behind one lock (transactions are trivially serialisable here).

    Effect claims follow :class:`shared.claims.EffectClaimStore`'s rules (the same as Firestore's).
    """

    def __init__(self) -> None:
        self._records: dict[str, JobRecord] = {}
        self._effects: dict[str, EffectDoc] = {}
        self._lock = threading.RLock()
        self.failures = FailureScript()
        self.reads = 0
        self.writes = 0
        self.queries = 0
        self.mutation_calls = 0

    def create(self, record: JobRecord) -> bool:
        """Insert if absent."""
        self.failures.check("create")
        with self._lock:
            if record.id in self._records:
                return False
            self._records[record.id] = record
            self.writes += 1
            return True

    def get(self, job_id: str) -> JobRecord | None:
        """One record or None."""
        self.failures.check("get")
        with self._lock:
            self.reads += 1
            return self._records.get(job_id)

    def update(self, job_id: str, mutate: RecordMutation) -> JobRecord:
        """Serialised read-modify-write."""
        self.failures.check("update")
        with self._lock:
            self.reads += 1
            current = self._records.get(job_id)
            if current is None:
                raise RecordNotFoundError(job_id)
            self.mutation_calls += 1
            changed = mutate(current)
            if changed is None or changed == current:
                return current
            if changed.status is not current.status:  # forward-only, like the Firestore adapter
                check_transition(current.status, changed.status)
            self._records[job_id] = changed
            self.writes += 1
            return changed

    def query(self, query: JobQuery) -> JobPage:
        """Filter, order, page (token = offset, base64)."""
        self.failures.check("query")
        with self._lock:
            self.queries += 1
            rows = [r for r in self._records.values() if _matches(r, query)]
        if query.order is QueryOrder.QUEUE_ORDER:
            rows.sort(key=lambda r: (r.queue_position, r.id))
        else:
            rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        start = int(base64.urlsafe_b64decode(query.page_token).decode()) if query.page_token else 0
        page = rows[start : start + query.limit]
        self.reads += len(page)
        end = start + len(page)
        token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(rows) else None
        return JobPage(records=page, next_page_token=token)

    def _apply_effect(self, operation: str, effect_id: str, decide: Callable[[EffectDoc | None], tuple[T, Write]]) -> T:
        """One read-decide-write under the lock (a release is never scripted to fail)."""
        if operation != "release_effect":
            self.failures.check(operation)
        with self._lock:
            answer, write = decide(self._effects.get(effect_id))
            if write == DELETE:
                del self._effects[effect_id]
            elif isinstance(write, EffectDoc):
                self._effects[effect_id] = write
            if write is not None:
                self.writes += 1
            return answer

    # test helpers
    def all(self) -> list[JobRecord]:
        """Every record (tests)."""
        with self._lock:
            return list(self._records.values())

    def effect(self, effect_id: str) -> EffectClaim | None:
        """Raw view of an effect claim (tests)."""
        with self._lock:
            e = self._effects.get(effect_id)
            return None if e is None else EffectClaim(effect_id, e.state, e.owner, e.expires_at, e.result)


def _matches(record: JobRecord, query: JobQuery) -> bool:
    if query.statuses is not None and record.status not in query.statuses:
        return False
    if query.lineage is not None and record.lineage != query.lineage:
        return False
    if query.dataset is not None:
        wanted = query.dataset
        if (record.dataset.uri if "#" in wanted else record.dataset.gcs_uri) != wanted:
            return False
    if query.since is not None and record.created_at < query.since:
        return False
    return query.pending_outbox is None or record.has_pending_outbox == query.pending_outbox


# --- publisher ---------------------------------------------------------------------------------


class FakePublisher:
    """Keeps every published event in order; can fail on demand."""

    def __init__(self, topic: str = "projects/local/topics/sftpilot-events") -> None:
        self.topic = topic
        self.published: list[OutgoingEvent] = []
        self.failures = FailureScript()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def publish(self, event: OutgoingEvent) -> str:
        """Record the event; raise PublishError when a failure is scripted."""
        try:
            self.failures.check("publish")
        except PublishError:
            raise
        except Exception as exc:  # scripted non-PublishError failures are wrapped like the adapter does
            raise PublishError(self.topic, event.event_id, str(exc)) from exc
        with self._lock:
            self.published.append(event)
            return str(next(self._ids))

    def of_type(self, event_type: str) -> list[OutgoingEvent]:
        """Published events of one type (tests)."""
        return [e for e in self.published if e.event_type == event_type]


# --- tuning backend ----------------------------------------------------------------------------


Responder = Callable[[str, GenerationRequest], str]
"""(endpoint, request) -> answer text, for scripting smoke-test outcomes."""


def _echo_responder(endpoint: str, request: GenerationRequest) -> str:
    last = request.contents[-1]["parts"][0].get("text", "") if request.contents else ""
    return f"[{endpoint.rsplit('/', 1)[-1]}] {last}"


@dataclass
class _FakeOperation:
    """A long-running operation: not done for ``remaining`` polls, then ``apply`` runs once."""

    remaining: int
    apply: Callable[[], None]
    applied: bool = False


@dataclass
class _FakeModel:
    name: str
    labels: dict[str, str]
    deployments: list[DeployedModelRef] = field(default_factory=list)
    create_time: datetime | None = None


class FakeTuningBackend:
    """Tuning jobs, models and endpoints in memory, with a concurrency quota like Vertex.

    Jobs start PENDING and move only when a test calls :meth:`set_state` (or
    :meth:`complete_all`). A SUCCEEDED job gets a tuned model deployed on its own endpoint,
    plus one endpoint per checkpoint unless ``export_last_checkpoint_only``.
    """

    def __init__(
        self,
        *,
        project: str = "local",
        location: str = "us-central1",
        quota: int = 1,
        latency_seconds: float = 0.0,
        responder: Responder = _echo_responder,
        checkpoints_per_job: int = 2,
        queue_when_full: bool = False,
        operation_polls: int = 0,
    ) -> None:
        """``operation_polls``: polls an undeploy/delete operation answers "not done" before it finishes."""
        self._prefix = f"projects/{project}/locations/{location}"
        self.quota = quota
        self.queue_when_full = queue_when_full
        """Full quota: accept the job PENDING + WAITING_FOR_QUOTA (as Vertex may) instead of a 429."""
        self.latency_seconds = latency_seconds
        self.responder = responder
        self.checkpoints_per_job = checkpoints_per_job
        self.jobs: dict[str, TuningJob] = {}
        self.specs: dict[str, TuningJobSpec] = {}
        self.models: dict[str, _FakeModel] = {}
        self.endpoints: dict[str, list[str]] = {}
        """Endpoint name -> deployed model names."""
        self.calls: Counter[str] = Counter()
        self.generations: list[tuple[str, GenerationRequest]] = []
        self.metric_series: dict[str, MetricSeries] = {}
        """Job name -> its metric series; jobs not listed have none (like a backend without curves)."""
        self.failures = FailureScript()
        self.operation_polls = operation_polls
        self.operations: dict[str, _FakeOperation] = {}
        self.traffic: dict[str, dict[str, int]] = {}
        """Endpoint name -> traffic split set by an undeploy (default: all to the first deployment)."""
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()

    def _enter(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        self.failures.check(operation)

    def _active_count(self) -> int:
        return sum(1 for j in self.jobs.values() if not j.has_ended and j.detail_state != WAITING_FOR_QUOTA)

    # --- jobs ---

    def create_job(self, spec: TuningJobSpec) -> TuningJob:
        """Create a PENDING job, or raise QuotaExceededError when ``quota`` jobs are active."""
        self._enter("create_job")
        if not spec.training_dataset_uri.startswith("gs://"):
            raise InvalidArgumentError("create_job", 400, "trainingDatasetUri must be a gs:// URI", "INVALID_ARGUMENT")
        with self._lock:
            full = self._active_count() >= self.quota
            if full and not self.queue_when_full:
                raise QuotaExceededError(
                    "create_job", 429, "concurrent tuning jobs quota exceeded", "RESOURCE_EXHAUSTED"
                )
            name = f"{self._prefix}/tuningJobs/{next(self._ids)}"
            now = utcnow()
            job = TuningJob(
                name=name,
                state=TuningState.PENDING,
                detail_state=WAITING_FOR_QUOTA if full else None,
                base_model=spec.base_model,
                display_name=spec.display_name,
                create_time=now,
                update_time=now,
                labels=dict(spec.labels),
            )
            self.jobs[name] = job
            self.specs[name] = spec
            return job

    def get_job(self, name: str) -> TuningJob:
        """Current job; NotFoundError when unknown or deleted."""
        self._enter("get_job")
        with self._lock:
            job = self.jobs.get(name)
        if job is None:
            raise NotFoundError("get_job", 404, f"TuningJob {name} not found", "NOT_FOUND")
        return job

    def read_metric_series(self, name: str) -> MetricSeries | None:
        """The series a test put in :attr:`metric_series`, or None; NotFoundError for unknown jobs."""
        self._enter("read_metric_series")
        with self._lock:
            if name not in self.jobs:
                raise NotFoundError("read_metric_series", 404, f"TuningJob {name} not found", "NOT_FOUND")
            series = self.metric_series.get(name)
        return None if series is None else {key: list(points) for key, points in series.items()}

    def list_jobs(self, labels: dict[str, str] | None = None, page_size: int = 100) -> Iterator[TuningJob]:
        """Jobs carrying all ``labels``, oldest first."""
        self._enter("list_jobs")
        with self._lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            if labels and any(job.labels.get(k) != v for k, v in labels.items()):
                continue
            yield job

    def cancel_job(self, name: str) -> None:
        """Move an active job to CANCELLING; ended jobs answer FAILED_PRECONDITION like Vertex."""
        self._enter("cancel_job")
        with self._lock:
            job = self.jobs.get(name)
            if job is None:
                raise NotFoundError("cancel_job", 404, f"TuningJob {name} not found", "NOT_FOUND")
            if job.has_ended:
                raise InvalidArgumentError("cancel_job", 400, "job already ended", "FAILED_PRECONDITION")
            self.jobs[name] = replace(job, state=TuningState.CANCELLING, update_time=utcnow())

    # --- test controls ---

    def set_state(
        self, name: str, state: TuningState, *, error_message: str | None = None, detail_state: str | None = None
    ) -> TuningJob:
        """Move a job (tests drive the lifecycle). SUCCEEDED creates the model and endpoints."""
        with self._lock:
            job = self.jobs[name]
            now = utcnow()
            changes: dict[str, object] = {"state": state, "update_time": now, "detail_state": detail_state}
            if state is TuningState.RUNNING and job.start_time is None:
                changes["start_time"] = now
            if state.has_ended:
                changes["end_time"] = now
            if state is TuningState.FAILED:
                changes["error_code"] = 3
                changes["error_message"] = error_message or "training failed"
            if state is TuningState.SUCCEEDED:
                changes.update(self._materialise_model(name, job))
            job = replace(job, **changes)  # type: ignore[arg-type]
            self.jobs[name] = job
            return job

    def complete_all(self, state: TuningState = TuningState.SUCCEEDED) -> None:
        """End every active job with ``state``."""
        with self._lock:
            for name, job in list(self.jobs.items()):
                if not job.has_ended:
                    self.set_state(name, state)

    def forget_job(self, name: str) -> None:
        """Make a job vanish (NotFound on the next get)."""
        with self._lock:
            self.jobs.pop(name, None)

    def _materialise_model(self, job_name: str, job: TuningJob) -> dict[str, object]:
        job_id = job_name.rsplit("/", 1)[-1]
        model = f"{self._prefix}/models/m{job_id}@1"
        endpoint = f"{self._prefix}/endpoints/e{job_id}"
        spec = self.specs.get(job_name)
        checkpoints: list[TunedCheckpoint] = []
        deployments = [DeployedModelRef(endpoint, f"d{job_id}")]
        self.endpoints[endpoint] = [model]
        if spec is not None and not spec.export_last_checkpoint_only:
            for epoch in range(1, self.checkpoints_per_job):
                ckpt_endpoint = f"{endpoint}-c{epoch}"
                self.endpoints[ckpt_endpoint] = [model]
                deployments.append(DeployedModelRef(ckpt_endpoint, f"d{job_id}-c{epoch}"))
                checkpoints.append(TunedCheckpoint(str(epoch), epoch, epoch * 10, ckpt_endpoint))
            last = self.checkpoints_per_job
            checkpoints.append(TunedCheckpoint(str(last), last, last * 10, endpoint))
        self.models[model] = _FakeModel(model, dict(job.labels), deployments, utcnow())
        return {
            "tuned_model": model,
            "endpoint": endpoint,
            "checkpoints": tuple(checkpoints),
            "data_stats": {"tuningDatasetExampleCount": 16, "totalBillableTokenCount": 4096},
        }

    # --- serving and models ---

    def generate(self, endpoint: str, request: GenerationRequest) -> GenerationResult:
        """Answer with ``responder`` (default: echo the last user text, tagged with the endpoint)."""
        self._enter("generate")
        with self._lock:
            base = "/publishers/" in endpoint or not endpoint.startswith("projects/")
            if not base and endpoint not in self.endpoints:
                raise NotFoundError("generate", 404, f"Endpoint {endpoint} not found", "NOT_FOUND")
            self.generations.append((endpoint, request))
        text = self.responder(endpoint, request)
        return GenerationResult(
            text=text, finish_reason="STOP", prompt_token_count=8, output_token_count=len(text) // 4
        )

    def get_model(self, name: str) -> ModelInfo:
        """Labels and deployments."""
        self._enter("get_model")
        with self._lock:
            model = self.models.get(name)
            if model is None:
                raise NotFoundError("get_model", 404, f"Model {name} not found", "NOT_FOUND")
            return ModelInfo(model.name, dict(model.labels), tuple(model.deployments), model.create_time)

    def _start(self, apply: Callable[[], None]) -> str | None:
        """Run ``apply`` now (``operation_polls == 0``) or when its operation is polled to done."""
        if self.operation_polls <= 0:
            apply()
            return None
        name = f"{self._prefix}/operations/{next(self._ids)}"
        self.operations[name] = _FakeOperation(self.operation_polls, apply)
        return name

    def get_operation(self, name: str) -> bool:
        """Not done for ``operation_polls`` polls, then applies the mutation and answers done."""
        self._enter("get_operation")
        with self._lock:
            operation = self.operations.get(name)
            if operation is None:
                raise NotFoundError("get_operation", 404, f"Operation {name} not found", "NOT_FOUND")
            if operation.remaining > 0:
                operation.remaining -= 1
                return False
            if not operation.applied:
                operation.applied = True
                operation.apply()
            return True

    def _deployments_on(self, endpoint: str) -> list[DeployedModelRef]:
        return [ref for model in self.models.values() for ref in model.deployments if ref.endpoint == endpoint]

    def get_endpoint(self, endpoint: str) -> EndpointInfo:
        """Deployed model ids and traffic split (all traffic to the first deployment unless split)."""
        self._enter("get_endpoint")
        with self._lock:
            if endpoint not in self.endpoints:
                raise NotFoundError("get_endpoint", 404, f"Endpoint {endpoint} not found", "NOT_FOUND")
            ids = tuple(ref.deployed_model_id for ref in self._deployments_on(endpoint))
            split = self.traffic.get(endpoint) or ({ids[0]: 100} if ids else {})
            return EndpointInfo(endpoint, ids, {k: v for k, v in split.items() if k in ids})

    def undeploy_model(
        self, endpoint: str, deployed_model_id: str, traffic_split: dict[str, int] | None = None
    ) -> str | None:
        """Remove one deployment; like Vertex, a model with traffic on a shared endpoint needs ``traffic_split``."""
        self._enter("undeploy_model")
        with self._lock:
            info = self.get_endpoint(endpoint) if endpoint in self.endpoints else None
            for model in self.models.values():
                for ref in list(model.deployments):
                    if ref.endpoint == endpoint and ref.deployed_model_id == deployed_model_id:
                        others = [d for d in (info.deployed_model_ids if info else ()) if d != deployed_model_id]
                        carries = info is not None and info.traffic_split.get(deployed_model_id, 0) > 0
                        if others and carries and not traffic_split:
                            raise InvalidArgumentError(
                                "undeploy_model",
                                400,
                                f"{deployed_model_id} carries traffic on {endpoint}: give a trafficSplit",
                                "FAILED_PRECONDITION",
                            )

                        def apply(model: _FakeModel = model, ref: DeployedModelRef = ref) -> None:
                            if ref in model.deployments:
                                model.deployments.remove(ref)
                                self.endpoints.get(endpoint, []).remove(model.name)
                            if traffic_split:
                                self.traffic[endpoint] = dict(traffic_split)

                        return self._start(apply)
        raise NotFoundError("undeploy_model", 404, f"{deployed_model_id} not on {endpoint}", "NOT_FOUND")

    def delete_endpoint(self, endpoint: str) -> str | None:
        """Delete an empty endpoint."""
        self._enter("delete_endpoint")
        with self._lock:
            if endpoint not in self.endpoints:
                raise NotFoundError("delete_endpoint", 404, f"Endpoint {endpoint} not found", "NOT_FOUND")
            if self.endpoints[endpoint]:
                raise InvalidArgumentError(
                    "delete_endpoint", 400, "endpoint still has deployed models", "FAILED_PRECONDITION"
                )
            return self._start(lambda: self._forget_endpoint(endpoint))

    def delete_model(self, name: str) -> str | None:
        """Delete an undeployed model (``models/ID`` or ``models/ID@1``: the whole model, as the adapter sends)."""
        self._enter("delete_model")
        wanted = unversioned_model_name(name)
        with self._lock:
            key = next((k for k in self.models if unversioned_model_name(k) == wanted), None)
            if key is None:
                raise NotFoundError("delete_model", 404, f"Model {name} not found", "NOT_FOUND")
            if self.models[key].deployments:
                raise InvalidArgumentError("delete_model", 400, "model is still deployed", "FAILED_PRECONDITION")
            return self._start(lambda: self._forget_model(key))

    def _forget_endpoint(self, endpoint: str) -> None:
        self.endpoints.pop(endpoint, None)
        self.traffic.pop(endpoint, None)

    def _forget_model(self, name: str) -> None:
        self.models.pop(name, None)

    def add_foreign_model(self, name: str, labels: dict[str, str]) -> None:
        """A model this deployment did not create (deletion-safety tests)."""
        with self._lock:
            self.models[name] = _FakeModel(name, dict(labels), [], utcnow())


class FakeSpendLedger:
    """:class:`shared.ports.SpendLedger` in memory; a lock makes each reservation atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.docs: dict[str, JSON] = {}

    def reserve(self, key: str, job_id: str, amount_usd: float, limit_usd: float | None) -> SpendReservation:
        """Reserve atomically (see the port)."""
        from shared.budget import apply_reservation  # noqa: PLC0415 - the domain rule, pure

        with self._lock:
            new_doc, answer = apply_reservation(self.docs.get(key), key, job_id, amount_usd, limit_usd)
            if new_doc is not None:
                self.docs[key] = copy.deepcopy(new_doc)
            return answer

    def get(self, key: str) -> JSON | None:
        """A copy of the ledger document, or None."""
        with self._lock:
            doc = self.docs.get(key)
            return copy.deepcopy(doc) if doc is not None else None

    def record_actual(self, key: str, job_id: str, actual: JSON) -> None:
        """Store the actual beside the reservation (ignored if there is none)."""
        with self._lock:
            jobs = (self.docs.get(key) or {}).get("jobs") or {}
            if job_id in jobs:
                jobs[job_id]["actual"] = dict(actual)
