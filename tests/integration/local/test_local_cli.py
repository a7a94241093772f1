"""`sftpilot local up | env | down` as a user runs them: separate processes, real stack."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from deploy.local.processes import pid_matches, read_pid_file

pytestmark = pytest.mark.integration

SFTPILOT = [str(Path(sys.executable).with_name("sftpilot"))]
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "datasets"
INTERFACE_KEYS = {
    "GOOGLE_CLOUD_PROJECT",
    "STORAGE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "SFTPILOT_BUCKET",
    "SFTPILOT_EVENTS_TOPIC",
    "SFTPILOT_TUNING_BASE_URL",
    "SFTPILOT_TUNING_LOCATION",
    "SFTPILOT_API_URL",
    "SFTPILOT_API_TOKEN",
}


def _cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = None if env is None else {**os.environ, **env}
    return subprocess.run(
        [*SFTPILOT, *args], capture_output=True, text=True, timeout=timeout, check=False, env=full_env
    )


def _start_up(state_dir: Path, *extra: str) -> subprocess.Popen[str]:
    log = (state_dir.parent / f"{state_dir.name}-up.log").open("w")
    return subprocess.Popen(
        [*SFTPILOT, "local", "up", "--state-dir", str(state_dir), *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_env(state_dir: Path, up: subprocess.Popen[str], timeout: float = 180) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert up.poll() is None, (state_dir.parent / f"{state_dir.name}-up.log").read_text()
        result = _cli("local", "env", "--state-dir", str(state_dir))
        if result.returncode == 0:
            env = {}
            for line in result.stdout.splitlines():
                name, _, value = line.removeprefix("export ").partition("=")
                env[name] = shlex.split(value)[0]
            return env
        time.sleep(0.5)
    raise AssertionError("the stack did not come up")


def _recorded_pids(state_dir: Path) -> dict[str, tuple[int, str | None]]:
    return {p.stem: read_pid_file(p) for p in (state_dir / "pids").glob("*.pid")}


def _wait_all_gone(pids: dict[str, tuple[int, str | None]], timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [name for name, (pid, start) in pids.items() if pid_matches(pid, start)]
        time.sleep(0.1)
    return alive


def test_env_without_a_stack_exits_2_with_a_clear_message(tmp_path):
    result = _cli("local", "env", "--state-dir", str(tmp_path))

    assert result.returncode == 2
    assert "no local stack is running" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_with_a_missing_emulator_names_it_and_starts_nothing(tmp_path):
    result = _cli("local", "up", "--state-dir", str(tmp_path / "s"), "--sdk-root", str(tmp_path / "sdk"))

    assert result.returncode == 2
    assert "Pub/Sub emulator not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s" / "stack.json").exists()


def test_full_stack_env_works_with_the_official_clients_and_down_stops_everything(tmp_path):
    state_dir = tmp_path / "stack"
    up = _start_up(state_dir, "--model-map", "gemini-2.5-flash=tiny-llama", "--poll-interval", "5")
    try:
        env = _wait_for_env(state_dir, up)
        assert set(env) >= INTERFACE_KEYS

        saved = dict(os.environ)
        os.environ.update(env)
        try:
            from google.cloud import firestore, pubsub_v1, storage

            bucket = storage.Client().bucket(env["SFTPILOT_BUCKET"])
            assert bucket.exists()
            topic = pubsub_v1.PublisherClient().get_topic(topic=env["SFTPILOT_EVENTS_TOPIC"])
            assert topic.name == env["SFTPILOT_EVENTS_TOPIC"]
            assert list(firestore.Client().collection("jobs").limit(1).stream()) == []
        finally:
            os.environ.clear()
            os.environ.update(saved)

        assert requests.get(f"{env['SFTPILOT_TUNING_BASE_URL']}/healthz", timeout=10).status_code == 200
        jobs = requests.get(
            f"{env['SFTPILOT_API_URL']}/jobs",
            headers={"Authorization": f"Bearer {env['SFTPILOT_API_TOKEN']}"},
            timeout=30,
        )
        assert jobs.status_code == 200
        assert requests.get(f"{env['SFTPILOT_API_URL']}/jobs", timeout=30).status_code in (401, 403)

        # A non-ASCII (CJK + emoji) name goes through upload -> bridge -> upload function -> record,
        # and `jobs watch` pasted right after the upload waits for the record instead of failing.
        dataset = tmp_path / "plain.txt"
        dataset.write_bytes((EXAMPLES / "support-bot" / "v1.jsonl").read_bytes())
        uploaded = _cli("upload", str(dataset), "--lineage", "faq", "--name", "サポート-😀", "--json", env=env)
        assert uploaded.returncode == 0, uploaded.stderr
        job_id = json.loads(uploaded.stdout)["job_id"]
        watched = _cli("jobs", "watch", job_id, "--interval", "1", "--timeout", "20", env=env, timeout=240)
        assert "no job record" not in watched.stderr and "Traceback" not in watched.stderr
        shown = _cli("jobs", "show", job_id, "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["dataset"].startswith(
            f"gs://{env['SFTPILOT_BUCKET']}/datasets/faq/サポート-😀.jsonl"
        )
        default_name = _cli("upload", str(dataset), "--lineage", "plain", "--json", env=env)
        assert default_name.returncode == 0, default_name.stderr
        assert "/datasets/plain/plain.jsonl#" in json.loads(default_name.stdout)["uri"]  # the file's stem

        pids = _recorded_pids(state_dir)
        assert {"pubsub", "firestore", "gcs", "tuning", "fn-upload", "fn-poll", "fn-completion", "fn-api"} <= set(pids)
        assert {"bridge", "scheduler"} <= set(pids)

        down = _cli("local", "down", "--state-dir", str(state_dir))

        assert down.returncode == 0, down.stderr
        assert "stopped supervisor" in down.stdout
        assert up.wait(timeout=120) == 0  # a graceful stop also exports Firestore; slower on a loaded machine
        assert _wait_all_gone(pids) == []
        assert _cli("local", "env", "--state-dir", str(state_dir)).returncode == 2
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)


def test_children_die_with_a_killed_supervisor(tmp_path):
    state_dir = tmp_path / "stack"
    up = _start_up(state_dir, "--no-tuning", "--no-functions")
    try:
        _wait_for_env(state_dir, up)
        pids = _recorded_pids(state_dir)
        assert set(pids) == {"pubsub", "firestore", "gcs"}

        up.kill()  # SIGKILL: no cleanup code runs in the supervisor
        up.wait(timeout=10)

        assert _wait_all_gone(pids) == []
    finally:
        if up.poll() is None:
            up.kill()
        # Whatever happened, never leave emulators behind.
        _cli("local", "down", "--state-dir", str(state_dir))


def test_up_stops_with_the_reason_when_an_emulator_dies(tmp_path):
    state_dir = tmp_path / "stack"
    up = _start_up(state_dir, "--no-tuning", "--no-functions", "--ephemeral")
    try:
        _wait_for_env(state_dir, up)
        pids = _recorded_pids(state_dir)
        os.kill(pids["pubsub"][0], signal.SIGKILL)

        assert up.wait(timeout=60) == 1
        log = (tmp_path / "stack-up.log").read_text()
        assert "error: pubsub died: exited with code" in log and "cannot be restarted" in log
        assert "local stack stopped." in log
        assert _wait_all_gone(pids) == []  # the other components were stopped too
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)
