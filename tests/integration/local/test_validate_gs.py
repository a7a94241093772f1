"""`sftpilot validate gs://...` streams the object from GCS (fake-gcs-server) through the adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.cloud import storage

from shared.cli.main import main

pytestmark = pytest.mark.integration

DATASET = Path(__file__).parents[3] / "examples" / "datasets" / "support-bot" / "v1.jsonl"


def _report(result):
    return json.loads(result.stdout)


def test_validating_a_gs_object_gives_the_same_report_as_the_local_file(emulators, gcs_bucket):
    storage.Client().bucket(gcs_bucket).blob("datasets/bot/v1.jsonl").upload_from_filename(str(DATASET))
    runner = CliRunner()

    remote = runner.invoke(main, ["validate", f"gs://{gcs_bucket}/datasets/bot/v1.jsonl", "--json"])
    local = runner.invoke(main, ["validate", str(DATASET), "--json"])

    assert remote.exit_code == local.exit_code == 0, remote.output
    remote_report, local_report = _report(remote), _report(local)
    assert remote_report["valid"] is True
    assert remote_report["stats"] == local_report["stats"]
    assert remote_report["error_counts"] == local_report["error_counts"]


def test_an_invalid_gs_object_exits_1_with_its_errors(emulators, gcs_bucket):
    bad = b'{"contents": [{"role": "model", "parts": [{"text": "no user turn"}]}]}\nnot json\n'
    storage.Client().bucket(gcs_bucket).blob("datasets/bot/bad.jsonl").upload_from_string(bad)

    result = CliRunner().invoke(main, ["validate", f"gs://{gcs_bucket}/datasets/bot/bad.jsonl", "--json"])

    assert result.exit_code == 1
    lines_with_errors = {e["line"] for e in _report(result)["errors"]}
    assert {1, 2} <= lines_with_errors


def test_a_missing_gs_object_exits_2_with_a_clear_message(emulators, gcs_bucket):
    result = CliRunner().invoke(main, ["validate", f"gs://{gcs_bucket}/datasets/none.jsonl"])

    assert result.exit_code == 2
    assert f"cannot read gs://{gcs_bucket}/datasets/none.jsonl: no such object" in result.output
    assert "Traceback" not in result.output


def test_a_generation_suffix_pins_the_version_read(emulators, gcs_bucket):
    blob = storage.Client().bucket(gcs_bucket).blob("datasets/bot/v2.jsonl")
    blob.upload_from_filename(str(DATASET))
    old = blob.generation
    blob.upload_from_string(b"not json\n")
    runner = CliRunner()

    current = runner.invoke(main, ["validate", f"gs://{gcs_bucket}/datasets/bot/v2.jsonl#{blob.generation}"])
    replaced = runner.invoke(main, ["validate", f"gs://{gcs_bucket}/datasets/bot/v2.jsonl#{old}"])

    assert current.exit_code == 1
    assert replaced.exit_code == 2
    assert "no such object" in replaced.output
