"""Start and stop the tuning server as a subprocess (tests, benchmarks, scripts).

>>> server = start_tuning_server(Path("/tmp/state"), model_map={"gemini-2.5-flash": "tiny-llama"})  # doctest: +SKIP
>>> server.url  # doctest: +SKIP
'http://127.0.0.1:40123'
>>> server.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[3]
_LISTENING = re.compile(r"on (http://\S+) ")


class TuningServerStartError(RuntimeError):
    """The server did not come up; the message carries its output."""


@dataclass
class RunningTuningServer:
    """A server process started by :func:`start_tuning_server`."""

    url: str
    process: subprocess.Popen[str]
    state_dir: Path
    log_path: Path

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST (with a body) or GET a test-control endpoint such as ``/__script``."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method="POST" if data is not None else "GET")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def requests(self, method: str | None = None, contains: str = "") -> list[dict[str, Any]]:
        """The API request log, optionally filtered by method and path substring."""
        logged: list[dict[str, Any]] = self.control("/__requests")["requests"]
        return [r for r in logged if (method is None or r["method"] == method) and contains in r["path"]]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait (workers are stopped; RUNNING jobs restart with the next server)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the state on disk is concerned."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_tuning_server(
    state_dir: Path,
    *,
    model_map: dict[str, str] | None = None,
    project: str | None = None,
    location: str | None = None,
    quota: int = 1,
    quota_mode: str = "reject",
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = 60.0,
) -> RunningTuningServer:
    """Start ``python -m deploy.local.tuning_server`` on a free port and wait for ``/healthz``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "deploy.local.tuning_server",
        "--port",
        "0",
        "--state-dir",
        str(state_dir),
        "--quota",
        str(quota),
        "--quota-mode",
        quota_mode,
    ]
    if model_map is not None:
        argv += ["--model-map", ",".join(f"{base}={local}" for base, local in model_map.items())]
    if project:
        argv += ["--project", project]
    if location:
        argv += ["--location", location]
    argv += extra_args or []
    log_path = state_dir.parent / f"{state_dir.name}.server.log"
    start_offset = log_path.stat().st_size if log_path.exists() else 0  # earlier runs' output
    log_file: IO[str] = log_path.open("a", encoding="utf-8")
    process_env = dict(os.environ)
    process_env.update(env or {})
    process_env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        argv, cwd=str(REPO_ROOT), env=process_env, stdout=log_file, stderr=subprocess.STDOUT, text=True
    )
    log_file.close()
    deadline = time.monotonic() + ready_timeout
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TuningServerStartError(f"tuning server exited with {process.returncode}: {log_path.read_text()}")
        with log_path.open("rb") as handle:
            handle.seek(start_offset)
            text = handle.read().decode("utf-8", errors="replace")
        match = _LISTENING.search(text)
        if match is not None and _healthy(match.group(1)):
            url = match.group(1)
            break
        time.sleep(0.1)
    if url is None:
        process.kill()
        raise TuningServerStartError(f"tuning server not ready after {ready_timeout} s: {log_path.read_text()}")
    return RunningTuningServer(url=url, process=process, state_dir=state_dir, log_path=log_path)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# --- a shared server and teaching data for test suites ---------------------------------------

TEST_PROJECT = "sftpilot-test"
TEST_LOCATION = "us-central1"
TINY_MODEL_MAP = {"gemini-2.5-flash": "tiny-llama", "gemini-2.5-flash-lite": "tiny-llama"}
"""Fast suites train the tiny random Llama built in code (milliseconds per step)."""

FORMAT_ANSWER = "ACME: ok"
"""The answer format the teaching dataset teaches: every model turn is exactly this."""
TINY_TEACHING_MULTIPLIER = 20.0
"""The tiny model needs a higher learning rate than SmolLM2 to learn a format in ~20 steps."""

_TRAIN_WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "bread",
    "lamp",
    "tiger",
    "violin",
    "copper",
    "garden",
    "window",
    "rocket",
    "puzzle",
    "honey",
]
_HELD_OUT_WORDS = ["banana", "ocean", "metal", "zebra", "piano", "quiet", "marble", "desert", "orbit", "velvet"]

_shared: RunningTuningServer | None = None


def format_examples(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` single-turn examples whose answers all use :data:`FORMAT_ANSWER`."""
    import random  # noqa: PLC0415 - test data only

    rng = random.Random(seed)
    return [
        {
            "contents": [
                {"role": "user", "parts": [{"text": " ".join(rng.sample(_TRAIN_WORDS, 3)) + "?"}]},
                {"role": "model", "parts": [{"text": FORMAT_ANSWER}]},
            ]
        }
        for _ in range(count)
    ]


def held_out_prompts(count: int = 4, seed: int = 7) -> list[str]:
    """Prompts built from words that never occur in :func:`format_examples`."""
    import random  # noqa: PLC0415

    rng = random.Random(seed)
    return [" ".join(rng.sample(_HELD_OUT_WORDS, 3)) + "?" for _ in range(count)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write one JSON object per line and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def shared_tuning_server(base_dir: Path) -> RunningTuningServer:
    """One tiny-llama server per test process (quota 1, reject mode, like Vertex)."""
    global _shared  # noqa: PLW0603 - process-wide test singleton
    if _shared is None or _shared.process.poll() is not None:
        _shared = start_tuning_server(
            base_dir / "shared-tuning-server" / "state",
            model_map=TINY_MODEL_MAP,
            project=TEST_PROJECT,
            location=TEST_LOCATION,
        )
    return _shared


def stop_shared_tuning_server() -> None:
    """Stop the shared server, if one runs (idempotent)."""
    global _shared  # noqa: PLW0603
    if _shared is not None:
        _shared.stop()
        _shared = None
