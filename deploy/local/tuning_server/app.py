"""Request routing: the Vertex AI REST surface google-genai uses, plus test controls.

Everything is answered HTTP 200 with Vertex-shaped JSON, or with the Google error envelope
``{"error": {"code", "message", "status"}}``. Paths are accepted under ``/v1/`` and
``/v1beta1/``; request bodies may use camelCase or snake_case keys.

API (``{P}`` = ``projects/{project}/locations/{location}``):

==========  ============================================================  =====================
POST        {P}/tuningJobs                                                 create (tunings.tune)
GET         {P}/tuningJobs?pageSize&pageToken&filter                       list
GET         {P}/tuningJobs/{id}                                            get
POST        {P}/tuningJobs/{id}:cancel                                     cancel
POST        {P}/endpoints/{id}:generateContent | :streamGenerateContent    tuned checkpoint
POST        {P}/models/{id}[@1]:generateContent                            tuned model
POST        {P}/publishers/google/models/{name}:generateContent            base model
GET/DELETE  {P}/endpoints/{id}; POST {P}/endpoints/{id}:undeployModel      endpoints
GET         {P}/endpoints                                                  list endpoints
GET/DELETE  {P}/models/{id}[@1]; GET {P}/models                            models
GET         {P}/operations/{id}                                            undeploy/delete operations
GET         {P}/metadataStores/.., {P}/tensorboards/..                     metric series (.metrics)
==========  ============================================================  =====================

Undeploy and deletes answer with a long-running operation that stays ``done: false`` for
``ServerConfig.operation_polls`` polls; the change happens when it finishes (as on Vertex, where
they run for minutes). Refusals follow the REST reference: a model still deployed or an endpoint
with deployed models -> 400 FAILED_PRECONDITION
(https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models/delete);
undeploying a model that carries traffic while others stay deployed needs a ``trafficSplit``
that takes its traffic away, else 400 FAILED_PRECONDITION
(https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints/undeployModel);
``DELETE models/{id}@{version}`` -> 400 INVALID_ARGUMENT unless ``versioned_model_delete=accept``.

Controls: ``GET /healthz``, ``POST /__script``, ``GET /__script``, ``GET /__requests``,
``POST /__reset``, ``POST /__jobstate {"name", "state", "error"?}`` (see :mod:`.faults`).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from deploy.local.tuning_server import metrics
from deploy.local.tuning_server.config import ServerConfig, VersionedDelete
from deploy.local.tuning_server.faults import FaultInjector
from deploy.local.tuning_server.filters import matches, parse_filter
from deploy.local.tuning_server.inference import InferenceService, Target
from deploy.local.tuning_server.runner import JobRunner
from deploy.local.tuning_server.store import StateStore
from deploy.local.tuning_server.wire import (
    JSON,
    ApiError,
    failed_precondition,
    invalid_argument,
    normalize_keys,
    not_found,
    now_rfc3339,
)

_API_PATH = re.compile(
    r"^/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/(?P<rest>.+)$"
)
_GENERATE_VERBS = frozenset({"generateContent", "streamGenerateContent"})
_DEFAULT_PAGE_SIZE = 100
_MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class _Call:
    """One API call after routing: ``{parent}/{parts...}:{verb}``."""

    method: str
    parent: str
    parts: list[str]
    verb: str
    query: str
    body: JSON


@dataclass
class _Operation:
    """A running undeploy/delete: ``apply`` makes the change when the operation finishes."""

    name: str
    metadata_type: str
    remaining: int
    apply: Callable[[], None]
    done: bool = False
    error: JSON | None = None

    def to_resource(self) -> JSON:
        """The google.longrunning ``Operation`` JSON."""
        data: JSON = {
            "name": self.name,
            "metadata": {
                "@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{self.metadata_type}",
                "genericMetadata": {"createTime": now_rfc3339(), "updateTime": now_rfc3339()},
            },
            "done": self.done,
        }
        if self.done:
            if self.error is not None:
                data["error"] = self.error
            else:
                data["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
        return data


@dataclass
class Response:
    """What the HTTP layer writes."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        """A JSON answer."""
        return cls(status=status, body=json.dumps(data).encode())

    @classmethod
    def error(cls, error: ApiError) -> Response:
        """The Google error envelope."""
        return cls.json(error.body(), status=error.http_status)


class TuningApp:
    """Routes one request to the runner, the inference service or a test control."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = StateStore(config.state_dir)
        self.runner = JobRunner(config, self.store)
        self.inference = InferenceService(config, self.store)
        self.faults = FaultInjector()
        self.operations: dict[str, _Operation] = {}
        """Running and finished operations (in memory: a restart forgets them, clients re-check)."""
        self._operations_lock = threading.Lock()

    def start(self) -> None:
        """Recover state from disk and start scheduling jobs."""
        self.runner.start()

    def stop(self) -> None:
        """Stop workers (their jobs stay RUNNING on disk and restart with the server)."""
        self.runner.stop()

    # --- entry point -----------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one HTTP request; never raises."""
        path, _, query = raw_path.partition("?")
        try:
            if path == "/healthz":
                return Response.json({"status": "ok"})
            if path.startswith("/__"):
                return self._control(method, path, body)
            parsed_body = _parse_body(body)
            self.faults.record(method, path, query, parsed_body)
            scripted = self.faults.take(method, path)
            if scripted is not None:
                if scripted.delay:
                    time.sleep(scripted.delay)
                if scripted.status is not None:
                    return Response(status=scripted.status, body=scripted.body, content_type=scripted.content_type)
            return self._api(method, path, query, headers, parsed_body)
        except ApiError as error:
            return Response.error(error)
        except Exception as error:  # never a traceback to the client
            import logging  # noqa: PLC0415

            logging.getLogger("sftpilot.tuning_server").exception("request %s %s failed", method, path)
            return Response.error(ApiError(500, f"Internal error: {type(error).__name__}: {error}"))

    # --- API -------------------------------------------------------------------------------

    def _api(self, method: str, path: str, query: str, headers: dict[str, str], body: Any) -> Response:
        match = _API_PATH.match(path)
        if match is None:
            raise not_found(f"The requested URL {path} was not found on this server.")
        lowered = {key.lower(): value for key, value in headers.items()}
        authorization = lowered.get("authorization", "")
        if not authorization.lower().startswith("bearer ") and not lowered.get("x-goog-api-key"):
            raise ApiError(
                401,
                "Request is missing required authentication credential. Expected OAuth 2 access token.",
                "UNAUTHENTICATED",
            )
        project, location, rest = match.group("project"), match.group("location"), match.group("rest")
        if self.config.project and project != self.config.project:
            raise ApiError(
                403,
                f"Permission denied on resource project {project} (this server serves {self.config.project}).",
                "PERMISSION_DENIED",
            )
        if self.config.location and location != self.config.location:
            raise invalid_argument(
                f"Location {location} is not served here (this server serves {self.config.location})."
            )
        parent = f"projects/{project}/locations/{location}"
        if not isinstance(body, dict):
            raise invalid_argument("The request body must be a JSON object.")
        body = normalize_keys(body)
        resource, _, verb = rest.partition(":")
        parts = resource.split("/")
        collection = parts[0]
        call = _Call(method=method, parent=parent, parts=parts, verb=verb, query=query, body=body)
        if collection == "tuningJobs":
            return self._tuning_jobs(call)
        if collection == "endpoints":
            return self._endpoints(call)
        if collection == "models":
            return self._models(call)
        if collection in {"metadataStores", "tensorboards"}:  # a job's metric series (see .metrics)
            return Response.json(metrics.route(self.store, method, parent, parts, verb, query))
        is_publisher_model = len(parts) == 4 and parts[1] == "google" and parts[2] == "models"
        if collection == "publishers" and is_publisher_model and method == "POST" and verb in _GENERATE_VERBS:
            return self._generate(self.inference.publisher_target(parts[3]), body, verb)
        if collection == "operations" and len(parts) == 2 and method == "GET" and not verb:
            return Response.json(self._poll_operation(f"{parent}/operations/{parts[1]}"))
        raise not_found(f"The requested URL {path} was not found on this server.")

    def _tuning_jobs(self, call: _Call) -> Response:
        method, parent, parts, verb, body = call.method, call.parent, call.parts, call.verb, call.body
        if len(parts) == 1 and not verb:
            if method == "POST":
                created = self.runner.create_job(parent, body)
                return Response.json(created.to_resource())
            if method == "GET":
                return Response.json(self._list_jobs(parent, call.query))
        if len(parts) == 2:
            job_id = parts[1]
            with self.store.lock:
                job = self.store.jobs.get(job_id)
                if job is None or not job.name.startswith(parent + "/"):
                    raise not_found(f"TuningJob {parent}/tuningJobs/{job_id} not found.")
                if method == "GET" and not verb:
                    return Response.json({**job.to_resource(), "experiment": metrics.experiment_name(job.name)})
            if method == "POST" and verb == "cancel":
                self.runner.cancel_job(job_id)
                return Response.json({})
        raise not_found(f"Unknown tuning job method {method} {'/'.join(parts)}{':' + verb if verb else ''}.")

    def _list_jobs(self, parent: str, query: str) -> JSON:
        params = parse_qs(query, keep_blank_values=True)
        page_size = _page_size(params)
        after_seq = _decode_token(params.get("pageToken", [""])[0])
        terms = parse_filter(params.get("filter", [""])[0], allow_labels=not self.config.refuse_label_filter)
        with self.store.lock:
            candidates = sorted(
                (job for job in self.store.jobs.values() if job.name.startswith(parent + "/")),
                key=lambda job: job.seq,
                reverse=True,
            )
            selected: list[JSON] = []
            next_token = ""
            last_seq = 0
            for job in candidates:
                if after_seq is not None and job.seq >= after_seq:
                    continue
                resource = job.to_resource()
                if not matches(terms, resource):
                    continue
                if len(selected) == page_size:
                    next_token = _encode_token(last_seq)
                    break
                selected.append(resource)
                last_seq = job.seq
        page: JSON = {"tuningJobs": selected}
        if next_token:
            page["nextPageToken"] = next_token
        return page

    def _endpoints(self, call: _Call) -> Response:
        method, parent, parts, verb, body = call.method, call.parent, call.parts, call.verb, call.body
        if len(parts) == 1 and method == "GET" and not verb:
            with self.store.lock:
                endpoints = [e.to_resource() for e in self.store.endpoints.values() if e.name.startswith(parent + "/")]
            return Response.json({"endpoints": sorted(endpoints, key=lambda e: e["name"])})
        if len(parts) != 2:
            raise not_found(f"Unknown endpoint method {'/'.join(parts)}.")
        endpoint_id = parts[1]
        if method == "POST" and verb in _GENERATE_VERBS:
            self._endpoint(parent, endpoint_id)
            return self._generate(self.inference.endpoint_target(endpoint_id), body, verb)
        with self.store.lock:
            endpoint = self._endpoint(parent, endpoint_id)
            if method == "GET" and not verb:
                return Response.json(endpoint.to_resource())
            if method == "DELETE" and not verb:
                self._check_endpoint_empty(endpoint)

                def delete_endpoint() -> None:
                    current = self.store.endpoints.get(endpoint_id)
                    if current is not None:
                        self._check_endpoint_empty(current)
                        self.store.remove_endpoint(endpoint_id)

                return Response.json(self._start_operation(parent, "DeleteOperationMetadata", delete_endpoint))
            if method == "POST" and verb == "undeployModel":
                deployed_model_id = body.get("deployedModelId")
                if not isinstance(deployed_model_id, str) or not deployed_model_id:
                    raise invalid_argument("deployedModelId is required.")
                split = _traffic_split(body.get("trafficSplit"))
                self._check_undeploy(endpoint, deployed_model_id, split)

                def undeploy() -> None:
                    self._undeploy(endpoint_id, deployed_model_id, split)

                return Response.json(self._start_operation(parent, "UndeployModelOperationMetadata", undeploy))
        raise not_found(f"Unknown endpoint method {method} {endpoint_id}:{verb}.")

    @staticmethod
    def _check_endpoint_empty(endpoint: Any) -> None:
        if endpoint.deployed_models:
            ids = ", ".join(d.deployed_model_id for d in endpoint.deployment_list)
            raise failed_precondition(
                f"Endpoint {endpoint.name} has deployed models ({ids}); undeploy them before deleting it."
            )

    @staticmethod
    def _check_undeploy(endpoint: Any, deployed_model_id: str, split: dict[str, int] | None) -> None:
        ids = [d.deployed_model_id for d in endpoint.deployment_list]
        if deployed_model_id not in ids:
            raise not_found(f"Deployed model {deployed_model_id} not found on endpoint {endpoint.name}.")
        others = [i for i in ids if i != deployed_model_id]
        if split is not None:
            unknown = sorted(set(split) - set(ids))
            if unknown:
                raise invalid_argument(f"trafficSplit names deployed models not on {endpoint.name}: {unknown}.")
            if others and sum(split.values()) != 100:
                raise invalid_argument(f"trafficSplit must add up to 100, got {sum(split.values())}.")
        if not others:
            return  # the last model: the endpoint's split simply ends up empty
        carries = endpoint.traffic.get(deployed_model_id, 0) > 0
        if carries and (split is None or split.get(deployed_model_id, 0) > 0):
            raise failed_precondition(
                f"Deployed model {deployed_model_id} has {endpoint.traffic[deployed_model_id]}% of the traffic of "
                f"{endpoint.name}; give it to the other deployed models ({', '.join(others)}) with trafficSplit "
                "in the undeployModel request."
            )

    def _undeploy(self, endpoint_id: str, deployed_model_id: str, split: dict[str, int] | None) -> None:
        endpoint = self.store.endpoints.get(endpoint_id)
        if endpoint is not None:
            remaining = [d for d in endpoint.deployed_models if d["deployed_model_id"] != deployed_model_id]
            endpoint.deployed_models = remaining
            if split is not None:
                endpoint.traffic_split = {k: v for k, v in split.items() if k != deployed_model_id and v > 0}
            elif endpoint.traffic_split is not None:
                endpoint.traffic_split.pop(deployed_model_id, None)
            if not remaining:
                endpoint.traffic_split = None
            endpoint.update_time = now_rfc3339()
            self.store.save_endpoint(endpoint)
        for model in list(self.store.models.values()):
            kept = [d for d in model.deployments if d["deployed_model_id"] != deployed_model_id]
            if len(kept) != len(model.deployments):
                model.deployments = kept
                model.update_time = now_rfc3339()
                self.store.save_model(model)

    def _start_operation(self, parent: str, metadata_type: str, apply: Callable[[], None]) -> JSON:
        """Start an operation; with ``operation_polls == 0`` it is done (and applied) at once."""
        name = f"{parent}/operations/{10**18 + secrets.randbelow(9 * 10**18)}"
        operation = _Operation(name, metadata_type, self.config.operation_polls, apply)
        with self._operations_lock:
            self.operations[name] = operation
        if operation.remaining <= 0:
            return self._poll_operation(name)
        return operation.to_resource()

    def _poll_operation(self, name: str) -> JSON:
        with self._operations_lock:
            operation = self.operations.get(name)
            if operation is None:
                raise not_found(f"Operation {name} not found.")
            if not operation.done and operation.remaining > 0:
                operation.remaining -= 1
                return operation.to_resource()
            if not operation.done:
                operation.done = True
                try:
                    with self.store.lock:
                        operation.apply()
                except ApiError as error:
                    operation.error = {"code": _RPC_CODES.get(error.status, 2), "message": error.message}
            return operation.to_resource()

    def _endpoint(self, parent: str, endpoint_id: str) -> Any:
        endpoint = self.store.endpoints.get(endpoint_id)
        if endpoint is None or not endpoint.name.startswith(parent + "/"):
            raise not_found(f"Endpoint {parent}/endpoints/{endpoint_id} not found.")
        return endpoint

    def _models(self, call: _Call) -> Response:
        method, parent, parts, verb, body = call.method, call.parent, call.parts, call.verb, call.body
        if len(parts) == 1 and method == "GET" and not verb:
            with self.store.lock:
                models = [m.to_resource() for m in self.store.models.values() if m.name.startswith(parent + "/")]
            return Response.json({"models": sorted(models, key=lambda m: m["name"])})
        if len(parts) != 2:
            raise not_found(f"Unknown model method {'/'.join(parts)}.")
        model_id, at, version = parts[1].partition("@")
        if version not in {"", "1", "default"}:
            raise not_found(f"Model {parent}/models/{parts[1]} not found (only version 1 exists).")
        if method == "POST" and verb in _GENERATE_VERBS:
            self._model(parent, model_id)
            return self._generate(self.inference.model_target(model_id), body, verb)
        with self.store.lock:
            model = self._model(parent, model_id)
            if method == "GET" and not verb:
                return Response.json(model.to_resource())
            if method == "DELETE" and not verb:
                if at and self.config.versioned_model_delete is VersionedDelete.REJECT:
                    raise invalid_argument(
                        f"models.delete takes projects/{{project}}/locations/{{location}}/models/{{model}} without "
                        f"a version, got {parts[1]!r}; the only version of a model cannot be deleted on its own."
                    )
                self._check_model_undeployed(model)

                def delete_model() -> None:
                    current = self.store.models.get(model_id)
                    if current is None:
                        return
                    self._check_model_undeployed(current)
                    self.store.remove_model(model_id)
                    for item in current.checkpoints:
                        folder = Path(item["adapter_dir"])
                        folder = folder if folder.is_absolute() else self.store.state_dir / folder
                        shutil.rmtree(folder, ignore_errors=True)

                return Response.json(self._start_operation(parent, "DeleteOperationMetadata", delete_model))
        raise not_found(f"Unknown model method {method} {model_id}:{verb}.")

    @staticmethod
    def _check_model_undeployed(model: Any) -> None:
        if model.deployments:
            endpoints = ", ".join(d.endpoint for d in model.deployment_list)
            raise failed_precondition(
                f"The model {model.name} is deployed to {endpoints}; undeploy it from every endpoint first."
            )

    def _model(self, parent: str, model_id: str) -> Any:
        model = self.store.models.get(model_id)
        if model is None or not model.name.startswith(parent + "/"):
            raise not_found(f"Model {parent}/models/{model_id} not found.")
        return model

    def _generate(self, target: Target, body: JSON, verb: str) -> Response:
        answer = self.inference.generate(target, body)
        if verb == "streamGenerateContent":
            return Response(
                status=200,
                body=f"data: {json.dumps(answer)}\r\n\r\n".encode(),
                content_type="text/event-stream",
            )
        return Response.json(answer)

    # --- test controls ---------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> Response:
        data = _parse_body(body)
        if not isinstance(data, dict):
            raise invalid_argument("Control requests take a JSON object.")
        if path == "/__script" and method == "POST":
            return Response.json(self.faults.add(data).describe())
        if path == "/__script" and method == "GET":
            return Response.json({"rules": self.faults.rules()})
        if path == "/__requests" and method == "GET":
            return Response.json({"requests": self.faults.requests()})
        if path == "/__reset" and method == "POST":
            self.faults.reset()
            if data.get("state", True):
                self.runner.reset()
                with self._operations_lock:
                    self.operations.clear()
            return Response.json({})
        if path == "/__jobstate" and method == "POST":
            name = data.get("name")
            state = data.get("state")
            if not isinstance(name, str) or not isinstance(state, str):
                raise invalid_argument("__jobstate needs 'name' and 'state'.")
            job_id = name.rsplit("/", 1)[-1]
            if job_id not in self.store.jobs:
                raise not_found(f"TuningJob {name} not found.")
            error = data.get("error")
            job = self.runner.force_state(job_id, state.upper(), error if isinstance(error, dict) else None)
            return Response.json(job.to_resource())
        raise not_found(f"Unknown control {method} {path}.")


def _parse_body(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError:
        raise invalid_argument("Invalid JSON payload received.") from None


def _page_size(params: dict[str, list[str]]) -> int:
    raw = params.get("pageSize", [""])[0]
    if not raw:
        return _DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise invalid_argument(f"pageSize must be an integer, got {raw!r}.") from None
    if size < 0:
        raise invalid_argument("pageSize must not be negative.")
    return min(size or _DEFAULT_PAGE_SIZE, _MAX_PAGE_SIZE)


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int | None:
    if not token:
        return None
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = decoded.partition(":")
        if prefix != "seq":
            raise ValueError(decoded)
        return int(number)
    except ValueError:
        raise invalid_argument(f"Invalid pageToken {token!r}.") from None


_RPC_CODES = {"INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "FAILED_PRECONDITION": 9, "INTERNAL": 13}
"""google.rpc.Code numbers for an operation's ``error`` (operations carry rpc codes, not HTTP codes)."""


def _traffic_split(raw: Any) -> dict[str, int] | None:
    """``trafficSplit`` of an undeployModel request (map of deployed model id -> percent), or None."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid_argument("trafficSplit must be a map of deployed model id to percent.")
    split: dict[str, int] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
            raise invalid_argument(f"trafficSplit[{key!r}] must be a percentage, got {value!r}.")
        split[str(key)] = int(value)
    return split
