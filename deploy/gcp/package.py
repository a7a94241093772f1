"""Build the source Cloud Functions deploys: the same code as the repository, laid out for the buildpack.

Layout of the package (the Python buildpack imports ``main`` from the source root and installs
``requirements.txt``)::

    main.py              re-exports the four entry points from functions.main (generated)
    requirements.txt     the core dependencies of pyproject.toml, verbatim (never torch)
    functions/           copied from the repository
    shared/              copied from the repository (Python files and package data)
    sftpilot-defaults.yaml   the tuning defaults, when built from a variables file

Terraform zips this folder itself (adding the defaults it renders); deploy.sh asks for a zip
with :func:`write_zip`, which is byte-for-byte reproducible so unchanged code keeps its name.

Example:
    python -m deploy.gcp.package --out deploy/gcp/build/source
    python -m deploy.gcp.package --out deploy/gcp/build/source --vars deploy/gcp/terraform/terraform.tfvars \\
        --zip deploy/gcp/build/sftpilot-source.zip
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import re
import shutil
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from deploy.gcp.config import DEFAULTS_FILE_NAME, ENTRY_POINTS, DeployVarsError, load_vars, tuning_defaults_yaml

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_OUT: Final = REPO_ROOT / "deploy" / "gcp" / "build" / "source"
PACKAGES: Final = ("shared", "functions")
INCLUDED_SUFFIXES: Final = frozenset({".py", ".json", ".yaml", ".yml", ".jsonl", ".typed"})
"""Source and package data. Everything else (caches, notebooks, binaries) stays out."""
FORBIDDEN_REQUIREMENTS: Final = frozenset({"torch", "transformers", "peft", "accelerate", "gguf", "trl"})
"""The local trainer's stack: must never reach a Cloud Function."""
_ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)


class PackagingError(Exception):
    """The source cannot be packaged (missing package, forbidden dependency, bad pyproject)."""

    def __init__(self, what: str, problem: str) -> None:
        self.what = what
        self.problem = problem
        super().__init__(f"{what}: {problem}")


def core_requirements(pyproject: Path) -> list[str]:
    """``[project].dependencies`` of pyproject.toml, checked to exclude the trainer's stack."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        deps = data["project"]["dependencies"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise PackagingError(str(pyproject), f"cannot read [project].dependencies ({exc})") from None
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise PackagingError(str(pyproject), "[project].dependencies must be a list of strings")
    for dep in deps:
        name = re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0].lower().replace("_", "-")
        if name in FORBIDDEN_REQUIREMENTS:
            raise PackagingError(str(pyproject), f"core dependency {dep!r} belongs in an extra, not in a function")
    return list(deps)


def entry_point_signatures(repo_root: Path = REPO_ROOT) -> dict[str, str | None]:
    """Entry points ``functions/main.py`` provides -> their functions-framework decorator.

    A name counts when main.py defines it or imports it from another ``functions`` module that
    defines it. The value is ``"cloud_event"``, ``"http"`` or None (undecorated). Read with
    ``ast`` only: nothing is imported, so no cloud client or setting is touched.
    """
    main_path = repo_root / "functions" / "main.py"
    try:
        tree = ast.parse(main_path.read_text(encoding="utf-8"), str(main_path))
    except (OSError, SyntaxError) as exc:
        raise PackagingError(str(main_path), f"cannot read the entry module ({exc})") from None
    found = _decorated_functions(tree)
    # Entry points may be imported lazily (main.py's ``if TYPE_CHECKING:`` block names them).
    statements = [n for top in tree.body for n in (top.body if isinstance(top, ast.If) else [top])]
    for node in statements:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("functions."):
            module_path = repo_root / Path(*node.module.split(".")).with_suffix(".py")
            try:
                module = ast.parse(module_path.read_text(encoding="utf-8"), str(module_path))
            except (OSError, SyntaxError) as exc:
                raise PackagingError(str(module_path), f"cannot read ({exc})") from None
            defined = _decorated_functions(module)
            for alias in node.names:
                if alias.name in defined:
                    found[alias.asname or alias.name] = defined[alias.name]
    return found


def _decorated_functions(tree: ast.Module) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            kinds = [
                d.attr
                for d in node.decorator_list
                if isinstance(d, ast.Attribute) and d.attr in ("cloud_event", "http")
            ]
            out[node.name] = kinds[0] if kinds else None
    return out


def check_entry_points(repo_root: Path = REPO_ROOT, entry_points: Sequence[str] = ENTRY_POINTS) -> None:
    """Fail unless functions/main.py provides every entry point the deployment targets."""
    provided = entry_point_signatures(repo_root)
    missing = [name for name in entry_points if name not in provided]
    if missing:
        raise PackagingError(
            str(repo_root / "functions" / "main.py"),
            f"does not provide the entry point(s) {', '.join(missing)} that the deployment targets",
        )


def main_module_source(entry_points: Sequence[str] = ENTRY_POINTS) -> str:
    """The generated ``main.py``: the buildpack loads entry points from this module."""
    exported = "".join(f'    "{name}",\n' for name in sorted(entry_points))
    # Re-export functions.main's lazy lookup, not the names: importing them here would load
    # all four handlers on every cold start.
    return (
        '"""Cloud Functions entry points (generated by deploy/gcp/package.py; do not edit).\n\n'
        'Each entry point is imported on first lookup, by functions.main.__getattr__."""\n\n'
        "from __future__ import annotations\n\n"
        "from functions.main import __getattr__\n\n"
        f"__all__ = [\n{exported}]\n"
    )


def _package_files(repo_root: Path, package: str) -> Iterable[Path]:
    base = repo_root / package
    if not (base / "__init__.py").is_file():
        raise PackagingError(str(base), "not a Python package (no __init__.py)")
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.suffix in INCLUDED_SUFFIXES and "__pycache__" not in path.parts:
            yield path


def build_source(out: Path, repo_root: Path = REPO_ROOT, defaults_yaml: str | None = None) -> Path:
    """Write the deployable source folder to ``out`` (replacing what was there) and return it."""
    requirements = core_requirements(repo_root / "pyproject.toml")
    check_entry_points(repo_root)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for package in PACKAGES:
        for path in _package_files(repo_root, package):
            target = out / path.relative_to(repo_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    (out / "main.py").write_text(main_module_source(), encoding="utf-8")
    (out / "requirements.txt").write_text(
        "# Core dependencies of sftpilot (pyproject.toml [project].dependencies), generated.\n"
        + "\n".join(requirements)
        + "\n",
        encoding="utf-8",
    )
    if defaults_yaml is not None:
        (out / DEFAULTS_FILE_NAME).write_text(defaults_yaml, encoding="utf-8")
    return out


def write_zip(source: Path, zip_path: Path) -> str:
    """Zip ``source`` reproducibly (sorted names, fixed dates and modes); returns the MD5 hex."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return hashlib.md5(zip_path.read_bytes(), usedforsecurity=False).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the folder, optionally with the defaults file and a zip."""
    parser = argparse.ArgumentParser(prog="python -m deploy.gcp.package", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"source folder (default {DEFAULT_OUT})")
    parser.add_argument("--vars", type=Path, help="variables file: also write sftpilot-defaults.yaml")
    parser.add_argument("--zip", type=Path, help="also write a reproducible zip here and print its MD5")
    args = parser.parse_args(argv)
    try:
        defaults = tuning_defaults_yaml(load_vars(args.vars)) if args.vars else None
        out = build_source(args.out, REPO_ROOT, defaults)
    except (PackagingError, DeployVarsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.zip:
        print(write_zip(out, args.zip))
    else:
        print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
