"""``validate`` statistics say what they count: measured examples vs every line (issue 19)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from shared.cli.main import main


def _example(i: int) -> str:
    return json.dumps(
        {
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": f"question {i}"}]},
                {"role": "model", "parts": [{"text": f"answer {i}"}]},
            ],
        }
    )


def test_the_system_instruction_share_names_the_measured_examples_it_is_out_of(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([*(_example(i) for i in range(20)), '{"foo": 1}', "not json"]) + "\n")

    result = CliRunner().invoke(main, ["validate", str(path)])

    out = result.output
    assert "examples" in out and "22 (22 lines" in out
    assert "20 (2 unreadable: no contents list)" in out
    assert "20 of 20 measured examples (100.0%)" in out
