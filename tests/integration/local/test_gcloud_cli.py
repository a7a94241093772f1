"""The real ``gcloud`` CLI works against the local stack with what ``sftpilot local env`` exports.

One upload with ``gcloud storage cp`` and one ``gcloud pubsub subscriptions pull`` of the GCS
notification that upload produced (issue 19). gcloud gets a throwaway configuration directory
(CLOUDSDK_CONFIG), so the test neither reads nor changes the user's gcloud setup.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploy.local.stack import NOTIFICATIONS_TOPIC
from deploy.local.testing import unique_name
from shared.cli.main import main

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("gcloud") is None, reason="the gcloud CLI is not installed"),
]


def _exported(state_dir: Path) -> dict[str, str]:
    result = CliRunner().invoke(main, ["local", "env", "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    env = {}
    for line in result.output.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


def _gcloud(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["gcloud", *args], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"gcloud {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def test_gcloud_storage_cp_and_pubsub_pull_work_with_the_exported_environment(emulators, tmp_path):
    exported = _exported(emulators.state_dir)
    assert exported["CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"].endswith("/")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_")},
        **exported,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    subscription = unique_name("gcloud-pull")
    _gcloud(env, "pubsub", "subscriptions", "create", subscription, f"--topic={NOTIFICATIONS_TOPIC}")
    dataset = tmp_path / "v1.jsonl"
    dataset.write_text('{"contents": []}\n')
    object_name = f"datasets/{unique_name('lineage')}/v1.jsonl"

    _gcloud(env, "storage", "cp", str(dataset), f"gs://{exported['SFTPILOT_BUCKET']}/{object_name}")

    from google.cloud import storage

    assert storage.Client().bucket(exported["SFTPILOT_BUCKET"]).blob(object_name).download_as_bytes() == (
        dataset.read_bytes()
    )
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while object_name not in seen and time.monotonic() < deadline:
        pulled = json.loads(
            _gcloud(env, "pubsub", "subscriptions", "pull", subscription, "--auto-ack", "--limit=10", "--format=json")
            or "[]"
        )
        seen += [m["message"]["attributes"].get("objectId", "") for m in pulled]
    assert object_name in seen
