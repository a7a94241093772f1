"""Fixtures for the deployment checks: variables files and `terraform console`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gcp_testing import GCP, PROJECT_NUMBER, TF, VARIANT_VARS


@pytest.fixture
def variant_vars(tmp_path: Path) -> Path:
    """A variables file setting every variable to a non-default value."""
    path = tmp_path / "variant.tfvars"
    path.write_text(VARIANT_VARS)
    return path


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    """The terraform binary (the Terraform checks are skipped, with the reason, without it)."""
    path = shutil.which("terraform")
    if path is None:
        pytest.skip("terraform is not installed: `terraform fmt` and `terraform console` checks need it")
    return path


Evaluate = Callable[..., Any]


@dataclass(frozen=True)
class ConsoleResult:
    """What `terraform console` answered: exit code, the decoded value, stderr without colours."""

    returncode: int
    value: Any
    errors: str


@pytest.fixture(scope="session")
def evaluate_config(terraform_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Evaluate:
    """Evaluate an expression over terraform/config.tf with `terraform console` (no providers).

    config.tf only references variables, locals and the two JSON tables; the one value that needs
    the provider (local.project_number) is stubbed with PROJECT_NUMBER.
    """
    workdir = tmp_path_factory.mktemp("tfconfig")
    module = workdir / "terraform"
    module.mkdir()
    for name in ("roles.json", "firestore_indexes.json"):
        shutil.copy(GCP / name, workdir / name)
    for name in ("variables.tf", "config.tf"):
        shutil.copy(TF / name, module / name)
    (module / "stub_project.tf").write_text(f'locals {{\n  project_number = "{PROJECT_NUMBER}"\n}}\n')
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}

    def run(expression: str, vars_file: Path | None = None, extra: Sequence[str] = ()) -> ConsoleResult:
        command = [terraform_bin, "console", *([f"-var-file={vars_file}"] if vars_file else []), *extra]
        proc = subprocess.run(
            command,
            input=f"jsonencode({expression})\n",
            capture_output=True,
            text=True,
            cwd=module,
            env=env,
            timeout=120,
            check=False,
        )
        errors = re.sub(r"\x1b\[[0-9;]*m", "", proc.stderr)
        lines = [line for line in proc.stdout.splitlines() if line.startswith('"')]
        value = json.loads(json.loads(lines[-1])) if proc.returncode == 0 and lines else None
        return ConsoleResult(proc.returncode, value, errors)

    def evaluate(expression: str, vars_file: Path | None = None, extra: Sequence[str] = ()) -> Any:
        result = run(expression, vars_file, extra)
        assert result.returncode == 0, f"terraform console failed:\n{result.errors}"
        assert "Error:" not in result.errors, result.errors
        return result.value

    evaluate.run = run  # type: ignore[attr-defined]
    return evaluate
