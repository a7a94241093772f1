"""The embedded local cloud: real emulators, the tuning server, the functions and the event wiring.

:class:`LocalStack` starts, on free loopback ports and in this order:

1. the official Pub/Sub and Firestore emulators (Java, started directly, never via gcloud);
2. the topics (GCS notifications, sftpilot events, dead letters) and the bridge's subscription;
3. fake-gcs-server, publishing ``OBJECT_FINALIZE`` notifications to the notification topic,
   and the datasets bucket;
4. (``TUNING``) the Vertex-compatible tuning server (``python -m deploy.local.tuning_server``);
5. (``FUNCTIONS``) one functions-framework process per entry point of ``functions/main.py``,
   then the wiring that reproduces GCP delivery: the notification bridge (Eventarc GCS trigger),
   a push subscription on the events topic to the completion function (Eventarc Pub/Sub
   trigger, retry policy + dead letters) and the scheduler loop (Cloud Scheduler -> poll).

With ``persist=True`` (what ``sftpilot local up`` uses) a restart with the same state
directory resumes: objects live on disk (fake-gcs-server's filesystem backend under
``data/gcs``), Firestore is exported to ``data/firestore`` on every graceful stop and every
:meth:`LocalStack.snapshot` (``local up`` takes one a minute) and imported on start, topics and
subscriptions are recreated, the tuning server keeps its jobs under ``tuning/``, and the
poller picks the running jobs up again. A hard kill (SIGKILL, power loss) loses the Firestore
writes since the last snapshot and every Pub/Sub message not yet delivered (the Pub/Sub
emulator keeps nothing on disk). :func:`wipe_state` (``sftpilot local down --wipe``) starts clean.

Everything writes ``logs/<name>.log`` and ``pids/<name>.pid`` under the state directory, and
``stack.json`` describes ports, URLs and the environment (``sftpilot local env`` / ``down`` read
it). :meth:`LocalStack.stop` (also run at interpreter exit) stops every process it started.

Example:
    >>> with LocalStack(".sftpilot/test", components=StackComponents.EMULATORS) as stack:  # doctest: +SKIP
    ...     os.environ.update(stack.env())
    ...     storage.Client().bucket(stack.bucket).blob("datasets/x/a.jsonl").upload_from_string(b"{}")
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Flag, auto
from pathlib import Path
from typing import Any

from deploy.local.components import Components, MissingComponentError, locate_components
from deploy.local.processes import (
    ComponentDiedError,
    ManagedProcess,
    ProcessSpec,
    free_port,
    http_ok,
    pid_matches,
    process_start_time,
    read_pid_file,
    tcp_open,
    terminate_group,
)
from shared.errors import SftpilotError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = Path(".sftpilot/local")
STACK_FILE = "stack.json"
STACK_FILE_VERSION = 1

DEFAULT_PROJECT = "sftpilot-local"
DEFAULT_BUCKET = "sftpilot-local-datasets"
DEFAULT_LOCATION = "us-central1"
DEFAULT_MODEL_MAP: dict[str, str] = {
    "gemini-2.5-flash": "smollm2-135m",
    "gemini-2.5-flash-lite": "smollm2-135m",
    "gemini-2.5-pro": "smollm2-135m",
    "gemini-2.0-flash-001": "smollm2-135m",
    "gemini-2.0-flash-lite-001": "smollm2-135m",
}
"""Gemini base model -> local model the tuning server trains (the demo trains SmolLM2 for real)."""

NOTIFICATIONS_TOPIC = "gcs-notifications"
EVENTS_TOPIC = "sftpilot-events"
DEAD_LETTER_TOPIC = "sftpilot-dead-letters"
BRIDGE_SUBSCRIPTION = "gcs-notifications-bridge"
COMPLETION_SUBSCRIPTION = "sftpilot-events-completion"
DEAD_LETTER_SUBSCRIPTION = "sftpilot-dead-letters-keep"
MAX_DELIVERY_ATTEMPTS = 5

_JAVA_FAST_START = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto"]
"""JVM flags for quick start-up on small machines (C1 only, serial GC)."""


class StackSetupError(SftpilotError):
    """Creating a topic, subscription or bucket on a started emulator failed."""

    code = "E_LOCAL_STACK_SETUP"

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"local stack setup failed: {what}: {reason}")


class StackAlreadyRunningError(SftpilotError):
    """Another ``sftpilot local up`` owns this state directory."""

    code = "E_LOCAL_STACK_RUNNING"

    def __init__(self, state_dir: str, pid: int) -> None:
        self.state_dir = state_dir
        self.pid = pid
        super().__init__(
            f"a local stack is already running from {state_dir} (supervisor pid {pid}); "
            f"stop it with: sftpilot local down --state-dir {state_dir}"
        )


DATA_DIRS = ("data", "tuning")
"""What a persistent stack keeps under its state directory (removed by :func:`wipe_state`)."""
FIRESTORE_EXPORTS = Path("data/firestore")
GCS_ROOT = Path("data/gcs")
SNAPSHOT_INTERVAL = 60.0
"""Seconds between Firestore snapshots while ``local up`` runs (bounds what a hard kill loses)."""

MAX_RESTARTS = 3
"""Restarts of one component per stack run before :meth:`LocalStack.supervise` gives up."""


class StackComponents(Flag):
    """What to run. The emulators are always started; the rest is opt-in."""

    EMULATORS = auto()
    """Pub/Sub + Firestore emulators and fake-gcs-server (what adapter tests need)."""
    TUNING = auto()
    """The Vertex-compatible local tuning server."""
    FUNCTIONS = auto()
    """The Cloud Functions (functions-framework) and their event wiring."""
    FULL = EMULATORS | TUNING | FUNCTIONS


@dataclass(frozen=True)
class FunctionTargets:
    """Which source file and entry points the stack serves (None = that function is not started).

    Tests substitute a recording source; the default is exactly what deploys to GCP.
    """

    source: Path = REPO_ROOT / "functions" / "main.py"
    upload: str | None = "on_dataset_uploaded"
    """CloudEvent ``google.cloud.storage.object.v1.finalized`` (fed by the bridge)."""
    poll: str | None = "poll_tuning_jobs"
    """HTTP, POSTed by the scheduler loop."""
    completion: str | None = "on_tuning_completed"
    """CloudEvent ``google.cloud.pubsub.topic.v1.messagePublished`` (push subscription)."""
    api: str | None = "jobs_api"
    """HTTP, the jobs API (bearer token ``SFTPILOT_API_TOKEN``)."""

    def roles(self) -> dict[str, tuple[str, str]]:
        """role -> (target, signature type) for the functions to start."""
        wanted = {
            "upload": (self.upload, "cloudevent"),
            "poll": (self.poll, "http"),
            "completion": (self.completion, "cloudevent"),
            "api": (self.api, "http"),
        }
        return {role: (target, sig) for role, (target, sig) in wanted.items() if target}


@dataclass(frozen=True)
class ComponentStatus:
    """One line of the live status table."""

    name: str
    alive: bool
    pid: int | None
    url: str | None
    exit_code: int | None
    log: str


ProgressCallback = Callable[[str], None]


def _ignore_progress(_message: str) -> None:
    return None


class LocalStack:
    """Start/stop the local cloud; a context manager. See the module docstring for the order."""

    def __init__(
        self,
        state_dir: Path | str = DEFAULT_STATE_DIR,
        project: str = DEFAULT_PROJECT,
        components: StackComponents = StackComponents.FULL,
        *,
        bucket: str = DEFAULT_BUCKET,
        location: str = DEFAULT_LOCATION,
        poll_interval: float = 10.0,
        model_map: Mapping[str, str] | None = None,
        quota: int = 1,
        functions: FunctionTargets | None = None,
        function_env: Mapping[str, str] | None = None,
        sdk_root: Path | None = None,
        on_progress: ProgressCallback | None = None,
        ready_timeout: float = 90.0,
        retry_backoff: tuple[float, float] = (1.0, 10.0),
        persist: bool = False,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        if quota < 1:
            raise ValueError(f"quota must be >= 1, got {quota}")
        self.state_dir = Path(state_dir).resolve()
        self.project = project
        self.components = components | StackComponents.EMULATORS
        self.bucket = bucket
        self.location = location
        self.poll_interval = poll_interval
        self.model_map = dict(model_map if model_map is not None else DEFAULT_MODEL_MAP)
        self.quota = quota
        self.functions = functions or FunctionTargets()
        self.function_env = dict(function_env or {})
        self.sdk_root = sdk_root
        self.ready_timeout = ready_timeout
        self.retry_backoff = retry_backoff
        self.persist = persist
        """Keep objects and records across restarts (see the module docstring)."""
        self.api_token = secrets.token_urlsafe(24)
        self._progress = on_progress or _ignore_progress
        self._processes: dict[str, ManagedProcess] = {}
        self._ports: dict[str, int] = {}
        self._started = False
        self._restarts: dict[str, int] = {}
        self._stopping = threading.Lock()
        self._atexit_registered = False

    # --- names ------------------------------------------------------------------------------

    def topic_path(self, topic: str) -> str:
        """``projects/P/topics/T``."""
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        """``projects/P/subscriptions/S``."""
        return f"projects/{self.project}/subscriptions/{subscription}"

    @property
    def events_topic_path(self) -> str:
        """Full path of the sftpilot events topic (``SFTPILOT_EVENTS_TOPIC``)."""
        return self.topic_path(EVENTS_TOPIC)

    @property
    def notifications_topic_path(self) -> str:
        """Topic fake-gcs-server publishes GCS notifications to."""
        return self.topic_path(NOTIFICATIONS_TOPIC)

    @property
    def dead_letter_topic_path(self) -> str:
        """Where undeliverable completion events end up after MAX_DELIVERY_ATTEMPTS."""
        return self.topic_path(DEAD_LETTER_TOPIC)

    def _port(self, name: str) -> int:
        try:
            return self._ports[name]
        except KeyError:
            raise RuntimeError(f"the local stack is not started: no port for {name!r} yet") from None

    @property
    def storage_url(self) -> str:
        """``STORAGE_EMULATOR_HOST`` (with scheme, as google-cloud-storage requires)."""
        return f"http://127.0.0.1:{self._port('gcs')}"

    @property
    def pubsub_host(self) -> str:
        """``PUBSUB_EMULATOR_HOST`` (no scheme)."""
        return f"127.0.0.1:{self._port('pubsub')}"

    @property
    def firestore_host(self) -> str:
        """``FIRESTORE_EMULATOR_HOST`` (no scheme)."""
        return f"127.0.0.1:{self._port('firestore')}"

    @property
    def tuning_url(self) -> str | None:
        """Base URL of the local tuning server, when it runs."""
        port = self._ports.get("tuning")
        return None if port is None else f"http://127.0.0.1:{port}"

    def function_url(self, role: str) -> str | None:
        """URL of one function (``upload``, ``poll``, ``completion``, ``api``) when it runs."""
        port = self._ports.get(f"fn-{role}")
        return None if port is None else f"http://127.0.0.1:{port}/"

    @property
    def api_url(self) -> str | None:
        """The jobs API (``SFTPILOT_API_URL``)."""
        url = self.function_url("api")
        return None if url is None else url.rstrip("/")

    # --- environment ------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """What a user's shell (or a test) exports to talk to this stack with the official clients."""
        env = {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "STORAGE_EMULATOR_HOST": self.storage_url,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "SFTPILOT_BUCKET": self.bucket,
            "SFTPILOT_EVENTS_TOPIC": self.events_topic_path,
            "SFTPILOT_TUNING_LOCATION": self.location,
        }
        env.update(self.gcloud_env())
        if self.tuning_url:
            env["SFTPILOT_TUNING_BASE_URL"] = self.tuning_url
        if self.api_url:
            env["SFTPILOT_API_URL"] = self.api_url
            env["SFTPILOT_API_TOKEN"] = self.api_token
        return env

    def gcloud_env(self) -> dict[str, str]:
        """What the ``gcloud`` CLI needs to use this stack (``gcloud storage``, ``gcloud pubsub``).

        Endpoint overrides are gcloud properties settable as ``CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>``
        (https://cloud.google.com/sdk/gcloud/reference/topic/endpoint-override); the value ends
        with '/' (gcloud rejects a storage override without it). ``auth/disable_credentials``
        (``CLOUDSDK_AUTH_DISABLE_CREDENTIALS``) sends no token, which the emulators ignore
        anyway, so no ``gcloud auth login`` is needed; ``core/project`` names the emulators'
        project (https://cloud.google.com/sdk/gcloud/reference/config).
        """
        return {
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": self.storage_url + "/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{self.pubsub_host}/",
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_CORE_PROJECT": self.project,
        }

    def function_environment(self) -> dict[str, str]:
        """The environment every function process gets (Settings reads these)."""
        env = {
            **self.env(),
            "SFTPILOT_API_TOKEN": self.api_token,
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        env.pop("SFTPILOT_API_URL", None)
        env.update(self.function_env)
        return env

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        """Start every selected component and wire them; on any failure stop what started, re-raise."""
        if self._started:
            return self
        self._check_not_running()
        components = locate_components(self.sdk_root)
        if StackComponents.FUNCTIONS in self.components and not self.functions.source.is_file():
            raise MissingComponentError(
                "Cloud Functions source",
                str(self.functions.source),
                "Pass FunctionTargets(source=...) or run from the sftpilot repository.",
            )
        for sub in ("logs", "pids", "run"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self._started = True
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._start_all(components)
        except BaseException:
            self.stop()
            raise
        self._write_stack_file("running")
        return self

    def stop(self) -> None:
        """Stop every process this stack started (idempotent; also runs at interpreter exit)."""
        with self._stopping:
            if not self._processes and not self._started:
                return
            groups = [
                ["scheduler", "bridge"],
                [name for name in self._processes if name.startswith("fn-")] + ["tuning"],
                ["gcs"],
                ["pubsub", "firestore"],
            ]
            for group in groups:
                if group == ["gcs"] and self.persist:
                    # Nothing writes to Firestore any more: this export is the complete state.
                    with contextlib.suppress(StackSetupError, RuntimeError):
                        self.snapshot()
                members = [self._processes[name] for name in group if name in self._processes]
                _stop_in_parallel(members)
            self._processes.clear()
            self._started = False
            (self.state_dir / STACK_FILE).unlink(missing_ok=True)
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    def status(self) -> list[ComponentStatus]:
        """Liveness of every started component, in start order."""
        rows = []
        for name, proc in self._processes.items():
            rows.append(
                ComponentStatus(
                    name=name,
                    alive=proc.alive(),
                    pid=proc.pid,
                    url=proc.spec.url,
                    exit_code=proc.returncode(),
                    log=str(proc.log_path),
                )
            )
        return rows

    def snapshot(self) -> Path | None:
        """Export Firestore to ``data/firestore`` (persistent stacks); the newest complete export wins.

        Uses the emulator's REST export (``POST /emulator/v1/projects/P:export``, the counterpart
        of the documented ``:import``, https://cloud.google.com/datastore/docs/emulator). The
        emulator's ``--export-on-exit`` flag
        (https://cloud.google.com/sdk/gcloud/reference/emulators/firestore/start) logs "Failed
        during export" when the jar is started directly, as here, so the stack exports itself
        before it stops the emulator. Older exports are removed once the new one is complete.
        """
        proc = self._processes.get("firestore")
        if not self.persist or proc is None or not proc.alive():
            return None
        exports = self.state_dir / FIRESTORE_EXPORTS
        exports.mkdir(parents=True, exist_ok=True)
        before = {p.name for p in exports.iterdir()}
        _rest(
            "POST",
            f"http://{self.firestore_host}/emulator/v1/projects/{self.project}:export",
            {"database": f"projects/{self.project}/databases/(default)", "export_directory": str(exports)},
            "export Firestore",
        )
        created = [p for p in exports.iterdir() if p.name not in before and p.is_dir()]
        if not created:
            return None
        newest = max(created, key=lambda p: p.stat().st_mtime)
        for old in exports.iterdir():
            if old != newest and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        return newest

    def supervise(self) -> list[str]:
        """Restart stateless components that exited; raise ComponentDiedError otherwise.

        The functions, the bridge, the scheduler and the tuning server (its jobs live on disk)
        come back as fresh processes, at most MAX_RESTARTS times each. An emulator that dies
        took its in-memory state with it, so the stack cannot go on silently: the error names
        the component, its exit code and the end of its log. Returns one line per restart.
        """
        restarted = []
        for name, proc in list(self._processes.items()):
            code = proc.returncode()
            if code is None:
                continue
            count = self._restarts.get(name, 0)
            if not proc.spec.restartable:
                raise ComponentDiedError(
                    name, f"exited with code {code} (it cannot be restarted)", str(proc.log_path), proc.log_tail()
                )
            if count >= MAX_RESTARTS:
                raise ComponentDiedError(
                    name, f"exited with code {code} after {count} restart(s)", str(proc.log_path), proc.log_tail()
                )
            self._restarts[name] = count + 1
            proc.stop(grace_seconds=1.0)
            proc.start()
            proc.wait_ready()
            self._write_stack_file("running")
            restarted.append(
                f"{name} exited with code {code}; restarted ({count + 1}/{MAX_RESTARTS}), log {proc.log_path}"
            )
        return restarted

    def reset_firestore(self) -> None:
        """Delete every document of the default database (emulator-only endpoint)."""
        url = f"http://{self.firestore_host}/emulator/v1/projects/{self.project}/databases/(default)/documents"
        _rest("DELETE", url, None, "reset Firestore")

    # --- internals --------------------------------------------------------------------------

    def _check_not_running(self) -> None:
        info = read_stack_file(self.state_dir)
        if info is None:
            return
        pid = int(info.get("supervisor_pid", 0))
        if pid and pid != os.getpid() and pid_matches(pid, info.get("supervisor_start_time")):
            raise StackAlreadyRunningError(str(self.state_dir), pid)
        # A stale stack (its supervisor died): stop whatever it left behind first.
        stop_recorded_stack(self.state_dir)

    def _spawn(self, spec: ProcessSpec) -> ManagedProcess:
        proc = ManagedProcess(spec, self.state_dir)
        self._progress(f"starting {spec.name}" + (f" on {spec.url}" if spec.url else ""))
        proc.start()
        self._processes[spec.name] = proc
        self._write_stack_file("starting")
        return proc

    def _wait(self, procs: Iterable[ManagedProcess]) -> None:
        for proc in procs:
            proc.wait_ready()
            self._progress(f"{proc.spec.name} ready")

    def _start_all(self, components: Components) -> None:
        for name in ("pubsub", "firestore", "gcs"):
            self._ports[name] = free_port()
        emulators = [
            self._spawn(self._pubsub_spec(components)),
            self._spawn(self._firestore_spec(components)),
        ]
        self._wait(emulators)
        self._create_topics()
        self._wait([self._spawn(self._gcs_spec(components))])
        self._create_bucket()

        later: list[ManagedProcess] = []
        if StackComponents.TUNING in self.components:
            self._ports["tuning"] = free_port()
            later.append(self._spawn(self._tuning_spec()))
        roles: dict[str, tuple[str, str]] = {}
        if StackComponents.FUNCTIONS in self.components:
            roles = self.functions.roles()
            for role in roles:
                self._ports[f"fn-{role}"] = free_port()
            for role, (target, signature) in roles.items():
                later.append(self._spawn(self._function_spec(role, target, signature)))
        self._wait(later)

        if "completion" in roles:
            self._create_push_subscription()
        if "upload" in roles:
            self._wait([self._spawn(self._bridge_spec())])
        if "poll" in roles:
            self._wait([self._spawn(self._scheduler_spec())])

    def _java_options(self) -> list[str]:
        """Quick start-up, and only warnings in the logs (the emulators log every request at INFO)."""
        config = self.state_dir / "run" / "java-logging.properties"
        config.write_text(
            "handlers=java.util.logging.ConsoleHandler\n"
            ".level=WARNING\n"
            "java.util.logging.ConsoleHandler.level=WARNING\n"
        )
        return [*_JAVA_FAST_START, f"-Djava.util.logging.config.file={config}"]

    def _pubsub_spec(self, c: Components) -> ProcessSpec:
        port = self._ports["pubsub"]
        url = f"http://127.0.0.1:{port}"
        return ProcessSpec(
            name="pubsub",
            argv=[str(c.pubsub_emulator), "--host=127.0.0.1", f"--port={port}"],
            env={
                "JAVA_OPTS": " ".join(self._java_options()),
                "JAVA_HOME": str(c.java.resolve().parents[1]),
            },
            ready=lambda: http_ok(url + "/"),
            port=port,
            url=url,
            ready_timeout=self.ready_timeout,
        )

    def _firestore_spec(self, c: Components) -> ProcessSpec:
        port = self._ports["firestore"]
        url = f"http://127.0.0.1:{port}"
        argv = [
            str(c.java),
            "-Duser.language=en",
            *self._java_options(),
            "-cp",
            str(c.firestore_jar),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
        ]
        latest = latest_firestore_export(self.state_dir) if self.persist else None
        if latest is not None:
            argv.append(f"--import-data={latest}")
            self._progress(f"restoring Firestore from {latest.parent.name}")
        return ProcessSpec(
            name="firestore",
            argv=argv,
            ready=lambda: http_ok(url + "/"),
            port=port,
            url=url,
            ready_timeout=self.ready_timeout,
        )

    def _gcs_spec(self, c: Components) -> ProcessSpec:
        port = self._ports["gcs"]
        url = f"http://127.0.0.1:{port}"
        argv = [
            str(c.fake_gcs_server),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            *self._gcs_backend(),
            "-external-url",
            url,
            "-event.pubsub-project-id",
            self.project,
            "-event.pubsub-topic",
            NOTIFICATIONS_TOPIC,
            "-event.list",
            "finalize",
            "-log-level",
            "warn",
        ]
        return ProcessSpec(
            name="gcs",
            argv=argv,
            env={"PUBSUB_EMULATOR_HOST": self.pubsub_host},
            ready=lambda: http_ok(url + "/storage/v1/b"),
            port=port,
            url=url,
            ready_timeout=self.ready_timeout,
        )

    def _gcs_backend(self) -> list[str]:
        """fake-gcs-server keeps objects in memory, or on disk for a persistent stack."""
        if not self.persist:
            return ["-backend", "memory"]
        root = self.state_dir / GCS_ROOT
        root.mkdir(parents=True, exist_ok=True)
        return ["-backend", "filesystem", "-filesystem-root", str(root)]

    def _tuning_spec(self) -> ProcessSpec:
        port = self._ports["tuning"]
        url = f"http://127.0.0.1:{port}"
        model_map = ",".join(f"{base}={local}" for base, local in self.model_map.items())
        argv = [
            sys.executable,
            "-m",
            "deploy.local.tuning_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--state-dir",
            str(self.state_dir / "tuning"),
            "--project",
            self.project,
            "--location",
            self.location,
            "--quota",
            str(self.quota),
            "--model-map",
            model_map,
        ]
        env = {
            "STORAGE_EMULATOR_HOST": self.storage_url,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "PYTHONUNBUFFERED": "1",
        }
        return ProcessSpec(
            name="tuning",
            argv=argv,
            env=env,
            cwd=REPO_ROOT,
            ready=lambda: http_ok(url + "/healthz"),
            port=port,
            url=url,
            ready_timeout=max(self.ready_timeout, 120.0),
            restartable=True,  # its jobs and models live under the state directory
        )

    def _function_spec(self, role: str, target: str, signature: str) -> ProcessSpec:
        port = self._ports[f"fn-{role}"]
        url = f"http://127.0.0.1:{port}/"
        argv = [
            sys.executable,
            "-m",
            "functions_framework",
            "--source",
            str(self.functions.source),
            "--target",
            target,
            "--signature-type",
            signature,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        env = {**self.function_environment(), "THREADS": "8", "WORKERS": "1"}
        return ProcessSpec(
            name=f"fn-{role}",
            argv=argv,
            env=env,
            cwd=REPO_ROOT,
            # TCP only: an HTTP probe would invoke the function. functions-framework imports the
            # source before it binds, so an open port means the entry point loaded.
            ready=lambda: tcp_open(port),
            port=port,
            url=url,
            ready_timeout=self.ready_timeout,
            restartable=True,
        )

    def _bridge_spec(self) -> ProcessSpec:
        ready_file = self.state_dir / "run" / "bridge.ready"
        target = self.function_url("upload")
        assert target is not None
        argv = [
            sys.executable,
            "-m",
            "deploy.local.bridge",
            "--subscription",
            self.subscription_path(BRIDGE_SUBSCRIPTION),
            "--target",
            target,
            "--ready-file",
            str(ready_file),
            "--dead-letter-topic",
            self.dead_letter_topic_path,
        ]
        return ProcessSpec(
            name="bridge",
            argv=argv,
            env={"PUBSUB_EMULATOR_HOST": self.pubsub_host, "GOOGLE_CLOUD_PROJECT": self.project},
            cwd=REPO_ROOT,
            ready=ready_file.exists,
            ready_timeout=self.ready_timeout,
            before_start=lambda: ready_file.unlink(missing_ok=True),
            restartable=True,
        )

    def _scheduler_spec(self) -> ProcessSpec:
        target = self.function_url("poll")
        assert target is not None
        argv = [
            sys.executable,
            "-m",
            "deploy.local.scheduler",
            "--url",
            target,
            "--interval",
            str(self.poll_interval),
            "--first-delay",
            str(min(self.poll_interval, 2.0)),
        ]
        started = time.monotonic()
        return ProcessSpec(
            name="scheduler",
            argv=argv,
            cwd=REPO_ROOT,
            ready=lambda: time.monotonic() - started > 0.3,
            ready_timeout=self.ready_timeout,
            restartable=True,
        )

    def _pubsub_rest(self, method: str, path: str, body: dict[str, Any] | None, what: str) -> None:
        _rest(method, f"http://{self.pubsub_host}/v1/{path}", body, what, ok_conflict=True)

    def _retry_policy(self) -> dict[str, str]:
        low, high = self.retry_backoff
        return {"minimumBackoff": f"{low:g}s", "maximumBackoff": f"{high:g}s"}

    def _create_topics(self) -> None:
        for topic in (NOTIFICATIONS_TOPIC, EVENTS_TOPIC, DEAD_LETTER_TOPIC):
            self._pubsub_rest("PUT", self.topic_path(topic), {}, f"create topic {topic}")
        self._pubsub_rest(
            "PUT",
            self.subscription_path(BRIDGE_SUBSCRIPTION),
            {
                "topic": self.notifications_topic_path,
                "ackDeadlineSeconds": 60,
                "retryPolicy": self._retry_policy(),
            },
            f"create subscription {BRIDGE_SUBSCRIPTION}",
        )
        self._pubsub_rest(
            "PUT",
            self.subscription_path(DEAD_LETTER_SUBSCRIPTION),
            {"topic": self.dead_letter_topic_path, "ackDeadlineSeconds": 60},
            f"create subscription {DEAD_LETTER_SUBSCRIPTION}",
        )

    def _create_push_subscription(self) -> None:
        port = self._ports["fn-completion"]
        # functions-framework reads the topic from the push URL path when it converts the
        # envelope into a messagePublished CloudEvent: keep projects/P/topics/T in the URL.
        endpoint = f"http://127.0.0.1:{port}/{self.events_topic_path}"
        self._pubsub_rest(
            "PUT",
            self.subscription_path(COMPLETION_SUBSCRIPTION),
            {
                "topic": self.events_topic_path,
                "ackDeadlineSeconds": 600,
                "pushConfig": {"pushEndpoint": endpoint},
                "retryPolicy": self._retry_policy(),
                "deadLetterPolicy": {
                    "deadLetterTopic": self.dead_letter_topic_path,
                    "maxDeliveryAttempts": MAX_DELIVERY_ATTEMPTS,
                },
            },
            f"create push subscription {COMPLETION_SUBSCRIPTION}",
        )

    def _create_bucket(self) -> None:
        _rest(
            "POST",
            f"{self.storage_url}/storage/v1/b?project={self.project}",
            {"name": self.bucket},
            f"create bucket {self.bucket}",
            ok_conflict=True,
        )

    def _write_stack_file(self, phase: str) -> None:
        info: dict[str, Any] = {
            "version": STACK_FILE_VERSION,
            "phase": phase,
            "state_dir": str(self.state_dir),
            "project": self.project,
            "bucket": self.bucket,
            "supervisor_pid": os.getpid(),
            "supervisor_start_time": process_start_time(os.getpid()),
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "components": {
                name: {
                    "pid": proc.pid,
                    "start_time": proc.start_time,
                    "port": proc.spec.port,
                    "url": proc.spec.url,
                    "log": str(proc.log_path),
                }
                for name, proc in self._processes.items()
            },
            "topics": {
                "notifications": self.notifications_topic_path,
                "events": self.events_topic_path,
                "dead_letters": self.dead_letter_topic_path,
            },
            "subscriptions": {
                "bridge": self.subscription_path(BRIDGE_SUBSCRIPTION),
                "completion_push": self.subscription_path(COMPLETION_SUBSCRIPTION),
                "dead_letters": self.subscription_path(DEAD_LETTER_SUBSCRIPTION),
            },
            "env": self.env() if phase == "running" else {},
        }
        path = self.state_dir / STACK_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(path)


# --- helpers shared with `sftpilot local down/env` ------------------------------------------------


def read_stack_file(state_dir: Path) -> dict[str, Any] | None:
    """The parsed ``stack.json`` of a state directory, or None when there is none (or it is corrupt)."""
    try:
        data = json.loads((Path(state_dir) / STACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def running_stack_env(state_dir: Path) -> dict[str, str] | None:
    """The exported environment of a live, fully started stack, or None."""
    info = read_stack_file(state_dir)
    if info is None or info.get("phase") != "running":
        return None
    pid = int(info.get("supervisor_pid", 0))
    if not pid or not pid_matches(pid, info.get("supervisor_start_time")):
        return None
    env = info.get("env")
    return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else None


def stop_recorded_stack(state_dir: Path, grace_seconds: float = 30.0) -> list[str]:
    """Stop a stack started by another process: ask its supervisor, then kill leftovers by PID file.

    Returns the names of what was stopped. Only processes whose PID *and* start time match the
    records are signalled.
    """
    state_dir = Path(state_dir)
    stopped: list[str] = []
    info = read_stack_file(state_dir)
    if info is not None:
        pid = int(info.get("supervisor_pid", 0))
        if pid and pid != os.getpid() and pid_matches(pid, info.get("supervisor_start_time")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
            deadline = time.monotonic() + grace_seconds
            while time.monotonic() < deadline and pid_matches(pid, info.get("supervisor_start_time")):
                time.sleep(0.1)
            stopped.append(f"supervisor (pid {pid})")
    pid_dir = state_dir / "pids"
    if pid_dir.is_dir():
        for pid_file in sorted(pid_dir.glob("*.pid")):
            record = read_pid_file(pid_file)
            if record is not None and pid_matches(*record):
                terminate_group(record[0])
                stopped.append(f"{pid_file.stem} (pid {record[0]})")
            pid_file.unlink(missing_ok=True)
    (state_dir / STACK_FILE).unlink(missing_ok=True)
    return stopped


def latest_firestore_export(state_dir: Path) -> Path | None:
    """The ``*.overall_export_metadata`` file of the newest complete Firestore export, or None."""
    exports = Path(state_dir) / FIRESTORE_EXPORTS
    if not exports.is_dir():
        return None
    found = [
        meta for folder in exports.iterdir() if folder.is_dir() for meta in folder.glob("*.overall_export_metadata")
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def wipe_state(state_dir: Path) -> list[str]:
    """Remove what a persistent stack kept (objects, records, tuning jobs); returns what was removed.

    Refuses while a stack runs from ``state_dir``; logs and PID files stay.
    """
    state_dir = Path(state_dir)
    info = read_stack_file(state_dir) or {}
    pid = int(info.get("supervisor_pid", 0))
    if pid and pid_matches(pid, info.get("supervisor_start_time")):
        raise StackAlreadyRunningError(str(state_dir), pid)
    removed = []
    for name in DATA_DIRS:
        path = state_dir / name
        if path.exists():
            shutil.rmtree(path)
            removed.append(str(path))
    return removed


def _stop_in_parallel(procs: list[ManagedProcess]) -> None:
    threads = [threading.Thread(target=proc.stop, name=f"stop-{proc.spec.name}") for proc in procs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _rest(method: str, url: str, body: dict[str, Any] | None, what: str, *, ok_conflict: bool = False) -> None:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for attempt in range(5):
        try:
            with _NO_PROXY.open(request, timeout=30):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 409 and ok_conflict:
                return
            if exc.code >= 500 and attempt < 4:
                time.sleep(0.2 * (attempt + 1))
                continue
            detail = exc.read().decode(errors="replace")[:300]
            raise StackSetupError(what, f"HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            if attempt < 4:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise StackSetupError(what, str(exc)) from None
