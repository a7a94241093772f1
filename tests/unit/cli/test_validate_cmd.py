"""``sftpilot validate`` through the real CLI entry point: exit codes, JSON contract, human report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from shared.cli.main import main
from shared.cli.validate_cmd import dataset_size, open_dataset
from shared.validation import DatasetReadError

ROOT = Path(__file__).resolve().parents[3]
DATASETS = ROOT / "tests" / "fixtures" / "datasets"
BROKEN = ROOT / "examples" / "datasets" / "broken-faq" / "faq.jsonl"


def invoke(*args: str, stdin: bytes | None = None) -> object:
    return CliRunner().invoke(main, ["validate", *args], input=stdin)


def test_valid_file_exits_0_with_a_summary() -> None:
    result = invoke(str(DATASETS / "valid_text_18.jsonl"))
    assert result.exit_code == 0, result.output
    assert "VALID: 0 errors, 1 warning" in result.stdout
    assert "turns per example" in result.stdout
    assert "W_FEW_EXAMPLES" in result.stdout


def test_invalid_file_exits_1_and_lists_line_path_code_and_fix() -> None:
    result = invoke(str(BROKEN))
    assert result.exit_code == 1
    out = result.stdout
    assert "INVALID" in out
    assert "line 10  contents[1].role  E_ROLE_INVALID" in out
    assert "line 22  E_JSON_SYNTAX: invalid JSON at column" in out
    assert 'fix: Replace "role": "assistant" with "role": "model"' in out


def test_json_output_is_exactly_one_object_with_the_contract_keys() -> None:
    result = invoke(str(BROKEN), "--json", "--epochs", "3", "--max-errors", "2")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert {"valid", "errors", "error_counts", "stats"} <= set(data)
    for issue in data["errors"]:
        assert set(issue) == {"line", "path", "code", "severity", "message", "hint"}
    assert data["error_counts"]["E_ROLE_INVALID"] == 1
    assert [issue["code"] for issue in data["errors"] if issue["severity"] == "error"] == [
        "E_FOREIGN_FORMAT",
        "E_ROLE_INVALID",
    ]
    assert data["errors_count"] == 5 and data["listing_truncated"] is True
    assert data["stats"]["billing"]["epochs"] == 3
    assert data["stats"]["examples"] == 29


def test_json_output_for_a_valid_file_exits_0() -> None:
    result = invoke(str(DATASETS / "valid_multimodal_4.jsonl"), "--json", "--role", "validation")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["errors"] == [] and data["role"] == "validation"


def test_foreign_file_names_the_conversion_command() -> None:
    result = invoke(str(DATASETS / "openai_chat_6.jsonl"))
    assert result.exit_code == 1
    assert "--from openai" in result.stdout
    assert result.stdout.count("E_FOREIGN_FORMAT") == 2  # once listed, once in the counts


def test_model_and_adapter_options_are_used() -> None:
    result = invoke(
        str(DATASETS / "valid_text_18.jsonl"), "--base-model", "gemini-2.5-pro", "--adapter-size", "16", "--json"
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error_counts"]["E_ADAPTER_SIZE_UNSUPPORTED"] == 1


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/no/such/file.jsonl", "no such file"),
        (str(DATASETS), "is a directory"),
    ],
)
def test_unreadable_inputs_exit_2_with_a_clear_message(path: str, message: str) -> None:
    result = invoke(path, "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_usage_errors_exit_2() -> None:
    assert invoke(str(BROKEN), "--role", "test").exit_code == 2
    assert invoke(str(BROKEN), "--max-errors", "-1").exit_code == 2
    assert invoke().exit_code == 2


def test_stdin_is_read_with_dash() -> None:
    data = (DATASETS / "valid_text_18.jsonl").read_bytes()
    result = invoke("-", "--json", stdin=data)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["stats"]["examples"] == 18


def test_progress_line_goes_to_stderr_only() -> None:
    result = invoke(str(DATASETS / "valid_text_18.jsonl"), "--json", "--progress")
    assert result.exit_code == 0
    assert "validating" in result.stderr and "\r" in result.stderr
    json.loads(result.stdout)


def test_open_dataset_seam(tmp_path: Path) -> None:
    target = tmp_path / "train.jsonl"
    shutil.copy(DATASETS / "valid_text_18.jsonl", target)
    with open_dataset(str(target)) as stream:
        assert dataset_size(stream) == target.stat().st_size
        assert stream.read(1) == b"{"
    with pytest.raises(DatasetReadError, match="no such file"):
        open_dataset(str(tmp_path / "missing.jsonl"))
