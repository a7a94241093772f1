"""``sftpilot convert`` through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from shared.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
DATASETS = ROOT / "tests" / "fixtures" / "datasets"


def invoke(*args: str, stdin: bytes | None = None) -> object:
    return CliRunner().invoke(main, ["convert", *args], input=stdin)


def test_convert_then_validate_succeeds(tmp_path: Path) -> None:
    out = tmp_path / "train.gemini.jsonl"
    result = invoke(str(DATASETS / "input_output_5.jsonl"), str(out), "--from", "input-output")
    assert result.exit_code == 0, result.output
    assert "converted 5 example(s)" in result.stderr
    assert f"next: sftpilot validate {out}" in result.stderr
    assert len(out.read_bytes().splitlines()) == 5
    check = CliRunner().invoke(main, ["validate", str(out), "--role", "validation", "--json"])
    assert check.exit_code == 0, check.stdout


def test_unconvertible_lines_are_listed_and_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "chat.jsonl"
    result = invoke(str(DATASETS / "openai_chat_6.jsonl"), str(out), "--from", "openai")
    assert result.exit_code == 1
    # line 5's https image URL is kept (fileUri may be a public HTTP(S) URL); line 6 is empty
    assert "1 line(s) could not be converted" in result.stderr
    assert "line 6: messages[1] (assistant) is empty" in result.stderr
    assert len(out.read_bytes().splitlines()) == 5  # the convertible lines are still written


def test_json_summary(tmp_path: Path) -> None:
    out = tmp_path / "pc.jsonl"
    result = invoke(str(DATASETS / "prompt_completion_6.jsonl"), str(out), "--from", "prompt-completion", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stderr)
    assert summary["converted"] == 5 and summary["failures"][0]["line"] == 6


def test_stdout_output_keeps_the_summary_on_stderr() -> None:
    data = (DATASETS / "prompt_completion_6.jsonl").read_bytes()
    result = invoke("-", "-", "--from", "prompt-completion", stdin=data)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["contents"][0]["role"] == "user"


def test_refuses_to_overwrite_the_input(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    shutil.copy(DATASETS / "prompt_completion_6.jsonl", source)
    result = invoke(str(source), str(source), "--from", "prompt-completion")
    assert result.exit_code == 2
    assert "same file" in result.stderr
    assert source.read_bytes() == (DATASETS / "prompt_completion_6.jsonl").read_bytes()


def test_missing_input_and_bad_format_exit_2(tmp_path: Path) -> None:
    missing = invoke(str(tmp_path / "nope.jsonl"), str(tmp_path / "out.jsonl"), "--from", "openai")
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    assert not (tmp_path / "out.jsonl").exists()
    assert invoke(str(DATASETS / "openai_chat_6.jsonl"), str(tmp_path / "o.jsonl"), "--from", "csv").exit_code == 2
    assert invoke(str(DATASETS / "openai_chat_6.jsonl"), "gs://b/o.jsonl", "--from", "openai").exit_code == 2


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    invoke(str(DATASETS / "openai_chat_6.jsonl"), str(out), "--from", "openai")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_legacy_separators_and_weight_zero_are_reported(tmp_path: Path) -> None:
    source = tmp_path / "legacy.jsonl"
    source.write_text(
        '{"prompt": "Review: great film\\n\\n###\\n\\n", "completion": " positive END"}\n'
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]}\n'
    )
    out = tmp_path / "out.jsonl"
    result = invoke(str(source), str(out), "--from", "prompt-completion")
    assert "1 line(s): WARNING: prompt ends with a legacy separator" in result.stderr
    assert "1 line(s): WARNING: completion ends with a legacy stop sequence" in result.stderr
    chat = invoke(str(source), str(tmp_path / "chat.jsonl"), "--from", "openai")
    assert chat.exit_code == 1
    assert "line 2: messages[1] has weight 0 (not to be trained on)" in chat.stderr
