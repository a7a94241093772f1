"""The tuning port on Vertex AI through the official google-genai SDK.

The same class talks to real Vertex AI (``base_url=None``: Application Default Credentials)
and to the local Vertex-compatible server (``base_url="http://127.0.0.1:8090"``: a fixed
bearer token and ``HttpOptions(base_url=...)``,
https://googleapis.github.io/python-genai/genai.html#genai.types.HttpOptions); callers cannot tell them apart.

Decisions:

* **Retries: one layer per call.** The calls the poller and the submission make (get, list,
  cancel) are retried here with exponential backoff and full jitter on 408/429/5xx and
  transport errors, ``retry_attempts`` tries in all. The calls of the smoke test and the
  cleanup (generate, get_model, get_endpoint, undeploy, deletes, get_operation) are sent once:
  those callers retry the one step that failed with :func:`shared.retry.call_with_retries`
  (``RetryPolicy.attempts``, 3 by default), so a prompt or a cleanup step costs at most that
  many calls. ``create_job`` is never retried: a timed-out create may have started a job, so
  the caller reconciles by label first.
* **Errors** are mapped to :mod:`shared.errors`: 429/RESOURCE_EXHAUSTED -> QuotaExceededError,
  400/FAILED_PRECONDITION -> InvalidArgumentError, 404 -> NotFoundError, 401/403 ->
  PermissionDeniedError, 408/5xx/timeouts/connection errors -> TransientBackendError.
* **Raw reads.** google-genai drops response fields it does not model, so ``get_job`` and
  ``get_model`` read the resource through the SDK's own authorised request path
  (``client._api_client.request``: same credentials, base URL and headers) and parse the JSON
  here. That keeps ``tuningJobMetadata`` (steps/epochs done, on Vertex too) and the local
  server's per-step ``trainingMetrics``; both land in :attr:`TuningJob.metrics`. If a future
  SDK drops that method, ``get_job`` falls back to ``tunings.get``.
* **Endpoints and deletes.** The SDK has no endpoint API: undeploy/delete use the same
  authorised path. Vertex answers them with long-running operations that can run for minutes;
  the adapter returns the operation's name and the caller polls it with ``get_operation``
  (a failed poll is polled again, the mutation is never re-sent; see :mod:`shared.cleanup`).
* **Label filters.** ``list_jobs(labels=...)`` sends ``labels.k="v" AND ...`` as the API
  filter *and* re-checks every job, so a server that ignores filters is still correct. The
  ``tuningJobs.list`` reference documents ``filter`` without its grammar
  (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs/list),
  so a 400 to the label filter is possible: the listing then falls back to at most
  ``unfiltered_list_limit`` jobs without a filter (newest first on Vertex, which is where a job
  of a crashed submission is) and filters them here.

Example:
    >>> backend = VertexTuningBackend("my-project", "us-central1", base_url="http://127.0.0.1:8090")
    >>> job = backend.create_job(TuningJobSpec(base_model="gemini-2.5-flash",
    ...     training_dataset_uri="gs://b/datasets/faq/v1.jsonl", display_name="faq-v1"))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import random
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from google.genai import errors as genai_errors
from google.genai import types

from shared.errors import (
    BackendError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    TransientBackendError,
)
from shared.logs import log_event
from shared.ports import (
    DeployedModelRef,
    EndpointInfo,
    GenerationRequest,
    GenerationResult,
    MetricSeries,
    ModelInfo,
    TunedCheckpoint,
    TuningJob,
    TuningJobSpec,
    unversioned_model_name,
)
from shared.records import JSON
from shared.states import TuningState

_T = TypeVar("_T")

ADAPTER_SIZES: dict[int, types.AdapterSize] = {
    1: types.AdapterSize.ADAPTER_SIZE_ONE,
    2: types.AdapterSize.ADAPTER_SIZE_TWO,
    4: types.AdapterSize.ADAPTER_SIZE_FOUR,
    8: types.AdapterSize.ADAPTER_SIZE_EIGHT,
    16: types.AdapterSize.ADAPTER_SIZE_SIXTEEN,
    32: types.AdapterSize.ADAPTER_SIZE_THIRTY_TWO,
}
"""``TuningJobSpec.adapter_size`` -> the API enum (the adapter size is the LoRA rank)."""

LOCAL_TOKEN = "local"
"""Not a secret: the local server only checks that a bearer token is present."""

# The SDK warns on every tune() call; the warning says nothing actionable to our users.
warnings.filterwarnings("ignore", message=r"The SDK's tuning implementation is experimental")

_TRANSIENT_STATUSES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED", "UNKNOWN"})
_INVALID_STATUSES = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE", "ALREADY_EXISTS"})
# google.rpc.Code numbers (inside long-running operations' ``error``) -> HTTP-like codes.
_RPC_TO_HTTP: dict[int, tuple[int, str]] = {
    1: (499, "CANCELLED"),
    2: (500, "UNKNOWN"),
    3: (400, "INVALID_ARGUMENT"),
    4: (504, "DEADLINE_EXCEEDED"),
    5: (404, "NOT_FOUND"),
    6: (409, "ALREADY_EXISTS"),
    7: (403, "PERMISSION_DENIED"),
    8: (429, "RESOURCE_EXHAUSTED"),
    9: (400, "FAILED_PRECONDITION"),
    10: (409, "ABORTED"),
    11: (400, "OUT_OF_RANGE"),
    12: (501, "UNIMPLEMENTED"),
    13: (500, "INTERNAL"),
    14: (503, "UNAVAILABLE"),
    16: (401, "UNAUTHENTICATED"),
}


def _transport_error_types() -> tuple[type[BaseException], ...]:
    """httpx2 (google-genai 3.x) and httpx (1.x/2.x) transport errors, whichever are installed."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        transport = getattr(module, "TransportError", None)
        if isinstance(transport, type) and issubclass(transport, BaseException):
            found.append(transport)
    return tuple(found)


_TRANSPORT_ERRORS = _transport_error_types()


def map_backend_error(operation: str, error: BaseException) -> BackendError | None:
    """Our exception class for a google-genai, transport or auth failure; None if not one of those.

    >>> map_backend_error("get", genai_errors.ClientError(404, {"error": {"code": 404, "message": "gone",
    ...     "status": "NOT_FOUND"}})).__class__.__name__
    'NotFoundError'
    """
    if isinstance(error, BackendError):
        return error
    if isinstance(error, genai_errors.APIError):
        code = int(error.code or 0)
        status = str(error.status or "")
        message = str(error.message or error)
        return _classify(operation, code, status, message)
    if isinstance(error, _TRANSPORT_ERRORS):
        is_timeout = "timeout" in type(error).__name__.lower() or isinstance(error, TimeoutError)
        status = "DEADLINE_EXCEEDED" if is_timeout else "UNAVAILABLE"
        return TransientBackendError(operation, 0, f"{type(error).__name__}: {error}", status)
    if isinstance(error, json.JSONDecodeError):
        return TransientBackendError(operation, 0, f"response is not JSON: {error}", "MALFORMED_RESPONSE")
    try:
        from google.auth import exceptions as auth_errors  # noqa: PLC0415 - only on the error path
    except ImportError:  # pragma: no cover - google-auth is a core dependency
        return None
    if isinstance(error, auth_errors.TransportError):
        return TransientBackendError(operation, 0, f"credentials refresh failed: {error}", "UNAVAILABLE")
    if isinstance(error, auth_errors.GoogleAuthError):
        return PermissionDeniedError(operation, 401, f"no usable Google credentials: {error}", "UNAUTHENTICATED")
    return None


def _classify(operation: str, code: int, status: str, message: str) -> BackendError:
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        return QuotaExceededError(operation, code, message, status)
    if code in (401, 403) or status in {"PERMISSION_DENIED", "UNAUTHENTICATED"}:
        return PermissionDeniedError(operation, code, message, status)
    if code == 404 or status == "NOT_FOUND":
        return NotFoundError(operation, code, message, status)
    if code in (408, 499) or code >= 500 or status in _TRANSIENT_STATUSES or status == "CANCELLED":
        return TransientBackendError(operation, code, message, status)
    if 400 <= code < 500 or status in _INVALID_STATUSES:
        return InvalidArgumentError(operation, code, message, status)
    # A non-200 success code (201/204/3xx) means a proxy or server we do not understand.
    return TransientBackendError(operation, code, f"unexpected HTTP status {code}: {message}", status)


def _is_retryable(error: BackendError) -> bool:
    return isinstance(error, TransientBackendError | QuotaExceededError)


class VertexTuningBackend:
    """:class:`shared.ports.TuningBackend` on google-genai (Vertex AI or the local server)."""

    def __init__(
        self,
        project: str,
        location: str,
        base_url: str | None = None,
        credentials: Any = None,
        retry_attempts: int = 4,
        *,
        api_version: str = "v1",
        timeout_seconds: float = 60.0,
        retry_initial_delay: float = 1.0,
        retry_max_delay: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        client: Any = None,
        unfiltered_list_limit: int = 1000,
    ) -> None:
        """``client`` replaces the google-genai client (unit tests); everything else is lazy."""
        if not project or not location:
            raise InvalidArgumentError("configure", 400, "project and location are required", "INVALID_ARGUMENT")
        if retry_attempts < 1:
            raise InvalidArgumentError("configure", 400, "retry_attempts must be >= 1", "INVALID_ARGUMENT")
        self.project = project
        self.location = location
        self.base_url = base_url
        self.retry_attempts = retry_attempts
        self._credentials = credentials
        self._api_version = api_version
        self._timeout_ms = int(timeout_seconds * 1000)
        self._retry_initial_delay = retry_initial_delay
        self._retry_max_delay = retry_max_delay
        self._sleep = sleep
        self._client = client
        self.unfiltered_list_limit = unfiltered_list_limit
        """Jobs read at most when the backend refuses a label filter (see the module docstring)."""

    # --- client ----------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The google-genai client, built on first use (cold starts stay cheap)."""
        if self._client is None:
            from google import genai  # noqa: PLC0415 - heavy import, only when used

            credentials = self._credentials
            if self.base_url:
                if credentials is None:
                    import google.oauth2.credentials  # noqa: PLC0415

                    credentials = google.oauth2.credentials.Credentials(token=LOCAL_TOKEN)  # type: ignore[no-untyped-call]
                http_options = types.HttpOptions(
                    base_url=self.base_url, api_version=self._api_version, timeout=self._timeout_ms
                )
            else:
                http_options = types.HttpOptions(api_version=self._api_version, timeout=self._timeout_ms)
            try:
                self._client = genai.Client(
                    vertexai=True,
                    project=self.project,
                    location=self.location,
                    credentials=credentials,
                    http_options=http_options,
                )
            except Exception as error:
                mapped = map_backend_error("configure", error)
                if mapped is None:
                    raise
                raise mapped from error
        return self._client

    # --- the port --------------------------------------------------------------------------

    def create_job(self, spec: TuningJobSpec) -> TuningJob:
        """Start a supervised tuning job. Never retried: reconcile by label before calling again."""
        config = self._create_config(spec)

        def create() -> TuningJob:
            # Continuous tuning: google-genai turns a ``projects/..`` base model into
            # preTunedModel{tunedModelName, checkpointId}, taking the checkpoint id only from a
            # typed CreateTuningJobConfig (a dict config drops it), as _create_config builds.
            # https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-use-continuous-tuning
            created = self.client.tunings.tune(
                base_model=spec.pre_tuned_model or spec.base_model,
                training_dataset=types.TuningDataset(gcs_uri=spec.training_dataset_uri),
                config=config,
            )
            return job_from_wire(_dump(created))

        return self._call("create", create, retry=False)

    def get_job(self, name: str) -> TuningJob:
        """Current view of a job, with training progress when the backend exposes it."""
        api_client = getattr(self.client, "_api_client", None)
        if api_client is not None and hasattr(api_client, "request"):
            return self._call("get", lambda: job_from_wire(self._raw("get", name)), retry=True)
        return self._call("get", lambda: job_from_wire(_dump(self.client.tunings.get(name=name))), retry=True)

    def list_jobs(self, labels: dict[str, str] | None = None, page_size: int = 100) -> Iterator[TuningJob]:
        """All jobs (newest first on Vertex), optionally only those carrying all ``labels``."""
        wanted = dict(labels or {})
        filter_text = label_filter(wanted) if wanted else None
        token: str | None = None
        read = 0
        while True:
            try:
                page, token = self._call(
                    "list", functools.partial(self._list_page, page_size, token, filter_text), retry=True
                )
            except InvalidArgumentError as refused:
                if filter_text is None or token is not None:
                    raise
                log_event(
                    "WARNING",
                    "tuning API refused the label filter; listing without it (bounded) and filtering here",
                    filter=filter_text,
                    error=refused.message,
                    limit=self.unfiltered_list_limit,
                )
                filter_text = None
                continue
            for job in page:
                read += 1
                if all(job.labels.get(key) == value for key, value in wanted.items()):
                    yield job
            if not token:
                return
            if filter_text is None and wanted and read >= self.unfiltered_list_limit:
                log_event("WARNING", "unfiltered job listing stopped at its bound", read=read, labels=wanted)
                return

    def cancel_job(self, name: str) -> None:
        """Request cancellation (QUEUED/PENDING end at once; RUNNING goes CANCELLING)."""
        self._call("cancel", lambda: self.client.tunings.cancel(name=name), retry=True)

    def read_metric_series(self, name: str) -> MetricSeries | None:
        """The job's scalar TensorBoard time series (loss, token accuracy per step), or None.

        Where Vertex keeps them (REST v1, documented resources):

        * ``TuningJob.experiment`` - "Output only. The Experiment associated with this
          TuningJob" (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs).
          It names a Vertex AI Experiment, a metadata context
          ``projects/P/locations/L/metadataStores/default/contexts/E``; its metadata key
          ``backing_tensorboard_resource`` names the TensorBoard, whose experiment ``E`` holds
          the runs (the convention of google-cloud-aiplatform's experiment tracking). A name
          that already is ``.../tensorboards/T/experiments/E`` is used as it is.
        * ``GET {tensorboardExperiment}/runs`` -> ``{tensorboardRuns: [{name}]}`` and
          ``GET {run}/timeSeries`` -> ``{tensorboardTimeSeries: [{name, displayName, valueType}]}``
          (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tensorboards.experiments.runs.timeSeries/list).
        * ``GET {tensorboard}:batchRead?timeSeries=...`` -> ``{timeSeriesData: [{tensorboardTimeSeriesId,
          valueType, values: [{wallTime, step, scalar: {value}}]}]}``, at most 1,000 scalars per
          series (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tensorboards/batchRead).

        Series are named by their display name without the leading ``/`` (Gemini tuning logs
        ``train_total_loss``, ``train_fraction_of_correct_next_step_preds``, ``eval_*``). The local
        tuning server serves the same resources. None when the job has no experiment or the
        experiment has no TensorBoard.
        """
        return self._call("read_metric_series", lambda: self._read_series(name), retry=True)

    def _read_series(self, name: str) -> MetricSeries | None:
        experiment = self._raw("get", name).get("experiment")
        if not isinstance(experiment, str) or not experiment:
            return None
        if "/tensorboards/" in experiment:
            tb_experiment = experiment
        else:
            context = self._raw("get", experiment)
            tensorboard = (context.get("metadata") or {}).get("backing_tensorboard_resource")
            if not isinstance(tensorboard, str) or not tensorboard:
                return None
            tb_experiment = f"{tensorboard}/experiments/{experiment.rsplit('/', 1)[-1]}"
        tensorboard_name = tb_experiment.split("/experiments/", 1)[0]
        display: dict[str, str] = {}
        for run in self._raw("get", f"{tb_experiment}/runs").get("tensorboardRuns") or []:
            run_name = run.get("name") if isinstance(run, dict) else None
            if not isinstance(run_name, str):
                continue
            for series in self._raw("get", f"{run_name}/timeSeries").get("tensorboardTimeSeries") or []:
                if isinstance(series, dict) and series.get("valueType", "SCALAR") == "SCALAR" and series.get("name"):
                    label = str(series.get("displayName") or series["name"].rsplit("/", 1)[-1]).lstrip("/")
                    display[str(series["name"])] = label
        if not display:
            return {}
        query = "&".join(f"timeSeries={quote(series_name, safe='/')}" for series_name in display)
        answer = self._raw("get", f"{tensorboard_name}:batchRead?{query}")
        result: MetricSeries = {}
        ids = {series_name.rsplit("/", 1)[-1]: label for series_name, label in display.items()}
        for data in answer.get("timeSeriesData") or []:
            series_label = ids.get(str(data.get("tensorboardTimeSeriesId", "")))
            if series_label is None:
                continue
            points = result.setdefault(series_label, [])
            for value in data.get("values") or []:
                step = _int(value.get("step"))
                scalar = (value.get("scalar") or {}).get("value")
                if step is not None and isinstance(scalar, int | float):
                    points.append((step, float(scalar)))
            points.sort()
        return result

    def generate(self, endpoint: str, request: GenerationRequest) -> GenerationResult:
        """Generate on ``projects/../endpoints/ID`` (or ``endpoints/ID``) or a base model name.

        Sent once: the smoke test retries a prompt (one retry layer, see the module docstring).
        """
        model = endpoint
        if endpoint.startswith(("endpoints/", "models/")):
            # google-genai mangles short endpoint names into publishers/... paths
            model = f"projects/{self.project}/locations/{self.location}/{endpoint}"
        config = types.GenerateContentConfig(
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=float(request.top_k) if request.top_k is not None else None,
            max_output_tokens=request.max_output_tokens,
            system_instruction=request.system_instruction,
            # Thinking per model family: https://cloud.google.com/vertex-ai/generative-ai/docs/thinking
            thinking_config=(
                types.ThinkingConfig(
                    thinking_budget=request.thinking_budget,
                    thinking_level=types.ThinkingLevel(request.thinking_level) if request.thinking_level else None,
                )
                if request.thinking_budget is not None or request.thinking_level is not None
                else None
            ),
            http_options=types.HttpOptions(timeout=int(request.timeout_seconds * 1000)),
        )

        def generate_once() -> GenerationResult:
            started = time.monotonic()
            response = self.client.models.generate_content(model=model, contents=request.contents, config=config)
            return _generation_result(response, time.monotonic() - started)

        return self._call("generate", generate_once, retry=False)

    def get_model(self, name: str) -> ModelInfo:
        """Labels and deployments of a tuned model (``projects/../models/ID[@version]``). Not retried here."""
        return self._call("get_model", lambda: model_info_from_wire(self._raw("get", name)), retry=False)

    def get_endpoint(self, endpoint: str) -> EndpointInfo:
        """Deployed models and traffic split of an endpoint. Not retried here."""
        return self._call(
            "get_endpoint", lambda: endpoint_info_from_wire(self._raw("get", self._full(endpoint))), retry=False
        )

    def undeploy_model(
        self, endpoint: str, deployed_model_id: str, traffic_split: dict[str, int] | None = None
    ) -> str | None:
        """Start undeploying one deployed model; the operation name while it runs (None when done).

        ``traffic_split`` replaces the endpoint's split in the same request, which Vertex needs
        when the model still carries traffic and other models stay deployed:
        https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints/undeployModel
        """
        body: JSON = {"deployedModelId": deployed_model_id}
        if traffic_split is not None:
            body["trafficSplit"] = dict(traffic_split)
        return self._call(
            "undeploy_model",
            lambda: self._operation_state(
                "undeploy_model", self._raw("post", f"{self._full(endpoint)}:undeployModel", body)
            ),
            retry=False,
        )

    def delete_endpoint(self, endpoint: str) -> str | None:
        """Start deleting an endpoint that has no deployed models; the operation name while it runs."""
        return self._call(
            "delete_endpoint",
            lambda: self._operation_state("delete_endpoint", self._raw("delete", self._full(endpoint))),
            retry=False,
        )

    def delete_model(self, name: str) -> str | None:
        """Start deleting a model; the operation name while it runs.

        ``models.delete`` takes ``projects/{p}/locations/{l}/models/{model}`` without a version
        (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models/delete),
        and ``models.deleteVersion`` refuses the only version of a model ("Deleting the only
        version in the Model is not allowed",
        https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models/deleteVersion).
        A tuned model has one version (``tunedModel.model`` ends in ``@1``), so the version
        suffix is dropped and the whole model is deleted.
        """
        path = unversioned_model_name(self._full(name))
        return self._call(
            "delete_model", lambda: self._operation_state("delete_model", self._raw("delete", path)), retry=False
        )

    def get_operation(self, name: str) -> bool:
        """Poll a long-running operation once: True when done, False while running; its error if it failed.

        https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.operations/get
        """
        return self._call(
            "get_operation", lambda: self._operation_state("get_operation", self._raw("get", name)) is None, retry=False
        )

    # --- internals -------------------------------------------------------------------------

    def _create_config(self, spec: TuningJobSpec) -> types.CreateTuningJobConfig:
        adapter_size = None
        if spec.adapter_size is not None:
            if spec.adapter_size not in ADAPTER_SIZES:
                sizes = ", ".join(str(size) for size in ADAPTER_SIZES)
                raise InvalidArgumentError(
                    "create",
                    400,
                    f"adapter_size {spec.adapter_size} is invalid; use one of {sizes}",
                    "INVALID_ARGUMENT",
                )
            adapter_size = ADAPTER_SIZES[spec.adapter_size]
        return types.CreateTuningJobConfig(
            tuned_model_display_name=spec.display_name or None,
            description=spec.description or None,
            validation_dataset=(
                types.TuningValidationDataset(gcs_uri=spec.validation_dataset_uri)
                if spec.validation_dataset_uri
                else None
            ),
            epoch_count=spec.epochs,
            adapter_size=adapter_size,
            learning_rate_multiplier=spec.learning_rate_multiplier,
            export_last_checkpoint_only=spec.export_last_checkpoint_only,
            pre_tuned_model_checkpoint_id=spec.pre_tuned_checkpoint_id if spec.pre_tuned_model else None,
            labels=dict(spec.labels) or None,
            encryption_spec=types.EncryptionSpec(kms_key_name=spec.kms_key_name) if spec.kms_key_name else None,
            # CreateTuningJobConfig has no service-account field: extra_body adds it to the request.
            http_options=(
                types.HttpOptions(extra_body={"serviceAccount": spec.service_account}) if spec.service_account else None
            ),
        )

    def _list_page(self, page_size: int, token: str | None, filter_text: str | None) -> tuple[list[TuningJob], str]:
        pager = self.client.tunings.list(
            config=types.ListTuningJobsConfig(page_size=page_size, page_token=token, filter=filter_text)
        )
        jobs = [job_from_wire(_dump(item)) for item in pager.page]
        next_token = pager.config.get("page_token") if isinstance(pager.config, dict) else None
        return jobs, str(next_token or "")

    def _raw(self, method: str, path: str, body: JSON | None = None) -> JSON:
        """An authorised request through the SDK's own transport; the parsed JSON answer."""
        response = self.client._api_client.request(method, path, dict(body or {}))
        text = getattr(response, "body", None) or ""
        if not text:
            return {}
        parsed = json.loads(text)
        return parsed if isinstance(parsed, dict) else {}

    def _full(self, name: str) -> str:
        if name.startswith("projects/"):
            return name
        return f"projects/{self.project}/locations/{self.location}/{name}"

    def _operation_state(self, operation: str, answer: JSON) -> str | None:
        """A google.longrunning Operation answer: its name while running, None when done; its error if failed.

        An answer that is not an operation (an empty body) counts as done.
        https://cloud.google.com/vertex-ai/docs/reference/rest/Shared.Types/ListOperationsResponse#Operation
        """
        if answer.get("done"):
            error = answer.get("error")
            if isinstance(error, dict):
                rpc_code = int(error.get("code") or 2)
                http_code, status = _RPC_TO_HTTP.get(rpc_code, (500, "UNKNOWN"))
                raise _classify(operation, http_code, status, str(error.get("message", "")))
            return None
        name = answer.get("name")
        if isinstance(name, str) and "/operations/" in name:
            return name
        return None

    def _call(self, operation: str, fn: Callable[[], _T], *, retry: bool) -> _T:
        """Run ``fn``, mapping errors; retry retryable ones with backoff when ``retry``."""
        attempt = 1
        while True:
            try:
                return fn()
            except Exception as error:
                mapped = map_backend_error(operation, error)
                if mapped is None:
                    raise
                if not retry or not _is_retryable(mapped) or attempt >= self.retry_attempts:
                    raise mapped from error
            # full jitter: uniform in [0, min(max, initial * 2^(attempt-1))]
            ceiling = min(self._retry_max_delay, self._retry_initial_delay * 2 ** (attempt - 1))
            self._sleep(random.uniform(0, ceiling))
            attempt += 1


# --- parsing ---------------------------------------------------------------------------------


def label_filter(labels: dict[str, str]) -> str:
    """The Vertex list filter selecting jobs that carry every label.

    >>> label_filter({"sftpilot-key": "abc", "managed-by": "sftpilot"})
    'labels.managed-by="sftpilot" AND labels.sftpilot-key="abc"'
    """
    terms = []
    for key, value in sorted(labels.items()):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        terms.append(f'labels.{key}="{escaped}"')
    return " AND ".join(terms)


def job_from_wire(data: JSON) -> TuningJob:
    """A Vertex ``TuningJob`` JSON (camelCase; int64 as strings or numbers) as our value type."""
    tuned = data.get("tunedModel") or {}
    checkpoints = tuple(
        TunedCheckpoint(
            checkpoint_id=str(item.get("checkpointId", item.get("checkpoint_id", ""))),
            epoch=_int(item.get("epoch")),
            step=_int(item.get("step")),
            endpoint=item.get("endpoint"),
        )
        for item in tuned.get("checkpoints") or []
        if isinstance(item, dict)
    )
    error = data.get("error") or {}
    base_model = data.get("baseModel") or ""
    pre_tuned = data.get("preTunedModel") or {}
    if not base_model and isinstance(pre_tuned, dict):
        # Continuous tuning: preTunedModel.baseModel (output only) names the Gemini model at the
        # root of the chain; the tuned model's name is the fallback when Vertex leaves it out.
        # https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs#PreTunedModel
        base_model = pre_tuned.get("baseModel") or pre_tuned.get("tunedModelName") or ""
    return TuningJob(
        name=str(data.get("name") or ""),
        state=TuningState.parse(data.get("state")),
        base_model=str(base_model),
        display_name=str(data.get("tunedModelDisplayName") or ""),
        create_time=parse_time(data.get("createTime")),
        start_time=parse_time(data.get("startTime")),
        end_time=parse_time(data.get("endTime")),
        update_time=parse_time(data.get("updateTime")),
        tuned_model=tuned.get("model") or None,
        endpoint=tuned.get("endpoint") or None,
        checkpoints=checkpoints,
        error_code=_int(error.get("code")) if error else None,
        error_message=error.get("message") if error else None,
        labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
        data_stats=data.get("tuningDataStats") or None,
        metrics=_metrics(data),
        # Output-only detail state while the job waits or runs (WAITING_FOR_QUOTA, TUNING, ...):
        # https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs#TuningJobState
        detail_state=str(data.get("tuningJobState") or "") or None,
    )


def _metrics(data: JSON) -> JSON | None:
    """Progress and latest metrics: Vertex's ``tuningJobMetadata`` plus the local ``trainingMetrics``."""
    metadata = data.get("tuningJobMetadata") or {}
    training = data.get("trainingMetrics") or {}
    completed_steps = _int(metadata.get("completedStepCount"))
    if completed_steps is None:
        completed_steps = _int(training.get("completedStepCount"))
    values = {
        "completed_steps": completed_steps,
        "completed_epochs": _int(metadata.get("completedEpochCount")),
        "total_steps": _int(training.get("totalStepCount")),
        "latest": training.get("latest") or None,
    }
    metrics: JSON = {key: value for key, value in values.items() if value is not None}
    return metrics or None


def endpoint_info_from_wire(data: JSON) -> EndpointInfo:
    """A Vertex ``Endpoint`` JSON as our value type (``trafficSplit`` values are percentages)."""
    ids = tuple(str(item.get("id", "")) for item in data.get("deployedModels") or [] if isinstance(item, dict))
    split = {str(k): int(v) for k, v in (data.get("trafficSplit") or {}).items() if _int(v) is not None}
    return EndpointInfo(name=str(data.get("name") or ""), deployed_model_ids=ids, traffic_split=split)


def model_info_from_wire(data: JSON) -> ModelInfo:
    """A Vertex ``Model`` JSON as our value type."""
    deployments = tuple(
        DeployedModelRef(endpoint=str(item.get("endpoint", "")), deployed_model_id=str(item.get("deployedModelId", "")))
        for item in data.get("deployedModels") or []
        if isinstance(item, dict)
    )
    return ModelInfo(
        name=str(data.get("name") or ""),
        labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
        deployments=deployments,
        create_time=parse_time(data.get("createTime")),
    )


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 with any number of fractional digits (Vertex sends nanoseconds), or None.

    >>> parse_time("2025-06-01T10:00:00.123456789Z").microsecond
    123456
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).replace("Z", "+00:00")
    main, dot, rest = text.partition(".")
    if dot:
        digits = ""
        for char in rest:
            if not char.isdigit():
                break
            digits += char
        text = f"{main}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _dump(sdk_object: Any) -> JSON:
    """An SDK pydantic object as camelCase JSON (what the server sent, minus unmodelled fields)."""
    if sdk_object is None:
        return {}
    dumped: JSON = sdk_object.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def _generation_result(response: Any, latency: float) -> GenerationResult:
    candidates = getattr(response, "candidates", None) or []
    finish_reason: str | None = None
    text = ""
    if candidates:
        first = candidates[0]
        reason = getattr(first, "finish_reason", None)
        finish_reason = getattr(reason, "value", None) or (str(reason) if reason is not None else None)
        content = getattr(first, "content", None)
        parts = getattr(content, "parts", None) or []
        text = "".join(
            part.text for part in parts if getattr(part, "text", None) and not getattr(part, "thought", None)
        )
    else:
        feedback = getattr(response, "prompt_feedback", None)
        reason = getattr(feedback, "block_reason", None)
        if reason is not None:
            finish_reason = f"BLOCKED_{getattr(reason, 'value', reason)}"
    usage = getattr(response, "usage_metadata", None)
    return GenerationResult(
        text=text,
        finish_reason=finish_reason,
        prompt_token_count=getattr(usage, "prompt_token_count", None),
        output_token_count=getattr(usage, "candidates_token_count", None),
        latency_seconds=latency,
    )
