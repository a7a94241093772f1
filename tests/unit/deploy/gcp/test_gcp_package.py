"""The function source package: layout, requirements, and its entry points in a clean virtualenv."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from gcp_testing import EXAMPLE_VARS, REPO

from deploy.gcp import config
from deploy.gcp.config import load_vars
from deploy.gcp.package import (
    ENTRY_POINTS,
    PackagingError,
    build_source,
    check_entry_points,
    core_requirements,
    write_zip,
)
from deploy.gcp.package import main as package_main


def test_requirements_are_the_core_dependencies_and_never_the_trainer() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert core_requirements(REPO / "pyproject.toml") == pyproject["project"]["dependencies"]
    assert "functions-framework" in " ".join(pyproject["project"]["dependencies"])


def test_a_trainer_dependency_in_core_is_refused(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["orjson>=3", "torch==2.13.0"]\n')
    with pytest.raises(PackagingError, match=r"torch==2\.13\.0"):
        core_requirements(pyproject)


def test_package_layout(tmp_path: Path) -> None:
    out = build_source(tmp_path / "src", defaults_yaml="base_model: gemini-2.5-flash\n")
    assert (out / "main.py").is_file()
    assert (out / "requirements.txt").read_text().splitlines()[1:] == core_requirements(REPO / "pyproject.toml")
    assert (out / "sftpilot-defaults.yaml").read_text() == "base_model: gemini-2.5-flash\n"
    for package in ("shared", "functions"):
        assert (out / package / "__init__.py").is_file()
        copied = {p.relative_to(out) for p in (out / package).rglob("*.py")}
        source = {p.relative_to(REPO) for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts}
        assert copied == source
    assert not list(out.rglob("__pycache__"))
    assert (out / "shared" / "schemas").is_dir()  # package data travels with the code
    main_source = (out / "main.py").read_text()
    for name in ENTRY_POINTS:
        assert name in main_source


def test_terraform_package_has_no_defaults_file(tmp_path: Path) -> None:
    # Terraform adds the defaults it renders; a stale copy in the folder would clash.
    out = build_source(tmp_path / "src")
    assert not (out / "sftpilot-defaults.yaml").exists()


def test_zip_is_reproducible(tmp_path: Path) -> None:
    first = write_zip(build_source(tmp_path / "a"), tmp_path / "a.zip")
    second = write_zip(build_source(tmp_path / "b"), tmp_path / "b.zip")
    assert first == second == hashlib.md5((tmp_path / "a.zip").read_bytes(), usedforsecurity=False).hexdigest()
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        names = archive.namelist()
    assert "main.py" in names and "requirements.txt" in names
    assert names == sorted(names)


def test_missing_entry_point_fails_the_build(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "functions", repo / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    main = repo / "functions" / "main.py"
    main.write_text(main.read_text().replace("    from functions.poller import poll_tuning_jobs\n", ""))
    with pytest.raises(PackagingError, match="poll_tuning_jobs"):
        check_entry_points(repo)


def test_command_line_reports_bad_variables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tfvars"
    bad.write_text('project = "acme-ml-prod"\n')
    assert package_main(["--out", str(tmp_path / "src"), "--vars", str(bad)]) == 2
    assert "variable 'bucket': required" in capsys.readouterr().err


# --- the deployed entry points, imported the way the Python buildpack does ---------------------------

_IMPORT_CHECK = """
import importlib.util, json, os, sys
import functions_framework
import main
from shared.settings import Settings
from shared.tuning_config import load_defaults

expected = json.loads(sys.argv[1])
for name, signature in expected.items():
    assert callable(getattr(main, name)), name
    app = functions_framework.create_app(name, "main.py", signature)
    assert app is not None
settings = Settings.from_env()
defaults = load_defaults(os.environ["SFTPILOT_DEFAULTS_FILE"])
import shared
print(json.dumps({
    "shared": shared.__file__,
    "bucket": settings.bucket,
    "defaults": defaults,
    "torch_installed": importlib.util.find_spec("torch") is not None,
    "torch_imported": "torch" in sys.modules,
}))
"""


def _clean_venv(requirements: Path) -> Path:
    """A virtualenv holding exactly requirements.txt, cached by its content (installs take a minute)."""
    digest = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("SFTPILOT_TEST_CACHE", Path.home() / ".cache" / "sftpilot-tests"))
    venv = cache / f"function-venv-{digest}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--prefer-binary"]
        install = subprocess.run(
            [*pip, "-r", str(requirements)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert install.returncode == 0, f"pip install -r requirements.txt failed:\n{install.stderr[-3000:]}"
        (venv / ".complete").write_text(requirements.read_text())
    return python


def test_packaged_entry_points_import_in_a_clean_virtualenv(tmp_path: Path) -> None:
    plan = load_vars(EXAMPLE_VARS)
    package = build_source(tmp_path / "source", defaults_yaml=config.tuning_defaults_yaml(plan))
    python = _clean_venv(package / "requirements.txt")
    env = config.function_env(plan)
    # /workspace in Cloud Functions is the package root here.
    env["SFTPILOT_DEFAULTS_FILE"] = str(package / "sftpilot-defaults.yaml")
    env.update(PATH=os.environ["PATH"], HOME=str(tmp_path))
    expected = {spec.entry_point: spec.signature_type for spec in config.functions(plan).values()}
    proc = subprocess.run(
        [str(python), "-s", "-c", _IMPORT_CHECK, json.dumps(expected)],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"the packaged entry points do not import:\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["shared"].startswith(str(package)), "shared must come from the package, not an install"
    assert report["bucket"] == plan.bucket
    assert report["defaults"]["cleanup"] == config.tuning_defaults(plan)["cleanup"]
    assert report["torch_installed"] is False and report["torch_imported"] is False


def test_bytecode_never_changes_the_archive_hash(tmp_path: Path) -> None:
    """Terraform names the source object by the zip's MD5: stray .pyc files must not change it."""
    repo = tmp_path / "repo"
    for package in ("shared", "functions"):
        shutil.copytree(REPO / package, repo / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", repo / "pyproject.toml")
    clean = write_zip(build_source(tmp_path / "a", repo), tmp_path / "a.zip")
    (repo / "shared" / "__pycache__").mkdir()
    (repo / "shared" / "__pycache__" / "settings.cpython-312.pyc").write_bytes(b"\x00bytecode")
    (repo / "functions" / "stray.pyc").write_bytes(b"\x00bytecode")
    dirty = write_zip(build_source(tmp_path / "b", repo), tmp_path / "b.zip")
    assert dirty == clean
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        assert not [n for n in archive.namelist() if n.endswith(".pyc") or "__pycache__" in n]
