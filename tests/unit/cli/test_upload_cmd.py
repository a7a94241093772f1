"""``sftpilot upload --name`` accepts exactly the names the upload trigger accepts (issue 14/19)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from shared.cli.main import main
from shared.cli.upload_cmd import dataset_object_name
from shared.errors import InvalidParameterError
from shared.intake import ignore_reason, name_problem
from shared.settings import Settings
from shared.upload_event import UploadEvent

SETTINGS = Settings(project="p", bucket="bkt")
NAMES = [
    "v1",
    "サポート-😀",
    "données été",
    "a/b",
    "v1.2",
    "..",
    ".",
    "v1.validation",
    "x#1",
    "a//b",
    "tab\tname",
    "",
    "é" * 600,
]


def _pipeline_accepts(object_name: str) -> bool:
    event = UploadEvent("1", "src", "google.cloud.storage.object.v1.finalized", "bkt", object_name, 1)
    return ignore_reason(event, SETTINGS) is None and name_problem(object_name, SETTINGS.datasets_prefix) is None


@pytest.mark.parametrize("name", NAMES)
def test_upload_accepts_a_name_exactly_when_the_upload_trigger_does(name):
    object_name = f"{SETTINGS.datasets_prefix}faq/{name}.jsonl"
    pipeline = _pipeline_accepts(object_name) and len(object_name.encode()) <= 1024
    try:
        assert dataset_object_name(SETTINGS.datasets_prefix, "faq", name) == object_name
        accepted = True
    except InvalidParameterError:
        accepted = False
    assert accepted is pipeline


def test_the_help_describes_the_default_name_as_the_file_stem():
    result = CliRunner().invoke(main, ["upload", "--help"])
    assert "default: the file's stem, e.g. plain for plain.txt" in " ".join(result.output.split())
