"""Hints the CLI prints name a command that works when pasted into a fresh shell (issue 19)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.cli.common import cli_command


def _program(tmp_path: Path) -> Path:
    program = tmp_path / ".venv" / "bin" / "sftpilot"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return program


def test_the_hint_is_the_venv_path_when_sftpilot_is_not_on_path(tmp_path):
    program = _program(tmp_path)
    assert cli_command(str(program), path="/usr/bin:/bin", cwd=str(tmp_path)) == ".venv/bin/sftpilot"


def test_the_hint_is_plain_sftpilot_when_the_path_finds_this_program(tmp_path):
    program = _program(tmp_path)
    path = f"{program.parent}{os.pathsep}/usr/bin"
    assert cli_command(str(program), path=path, cwd=str(tmp_path)) == "sftpilot"


def test_the_hint_is_absolute_when_run_from_outside_the_clone(tmp_path):
    program = _program(tmp_path / "clone")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert cli_command(str(program), path="/usr/bin", cwd=str(elsewhere)) == str(program)


def test_make_shell_gives_a_shell_where_plain_sftpilot_is_the_clones(tmp_path):
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[3]
    if shutil.which("make") is None or not (root / ".venv" / ".installed").exists():
        pytest.skip("needs make and an installed .venv")
    done = subprocess.run(
        ["make", "-s", "-C", str(root), "shell"],
        input="command -v sftpilot; exit\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SHELL": "/bin/bash", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.stdout.strip().splitlines()[-1] == str(root / ".venv" / "bin" / "sftpilot")
