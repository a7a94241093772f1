"""Generated deployment files: the Firestore index table and the README's tables.

Sources of truth, and what is generated from them:

* ``shared.adapters.firestore.REQUIRED_COMPOSITE_INDEXES`` -> ``deploy/gcp/firestore_indexes.json``
  (read by Terraform and deploy.sh);
* ``deploy/gcp/roles.json`` -> the role table; ``shared.settings.Settings`` -> the settings
  table; ``terraform/variables.tf`` -> the variables table, between ``<!-- generated:NAME -->``
  markers of ``deploy/gcp/README.md`` (and any other README given with ``--readme``).

``python -m deploy.gcp.generate --write`` updates them; ``--check`` (what the tests run) fails
when one is stale, so a new query, grant, setting or variable cannot ship undocumented.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import itertools
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from deploy.gcp.config import GCP_DIR, INDEXES_FILE, SETTINGS_SOURCES, roles_table
from shared.settings import Settings

README: Final = GCP_DIR / "README.md"
TOP_README: Final = GCP_DIR.parents[1] / "README.md"
"""The project README carries the same generated tables (role table with reasons, settings)."""
VARIABLES_TF: Final = GCP_DIR / "terraform" / "variables.tf"
SETTINGS_PY: Final = Path(__file__).resolve().parents[2] / "shared" / "settings.py"

SETTING_MEANINGS: Final = {
    "datasets_prefix": "Folder of the bucket watched for datasets; other objects never start work.",
    "reports_prefix": "Folder the validation and smoke-test reports go to; it never triggers intake.",
    "tuning_location": "Vertex AI region of the tuning jobs.",
    "firestore_database": "Firestore database of the job records.",
    "jobs_collection": "Collection of the job records.",
    "effects_collection": "Collection of the side-effect claims (one per completion event).",
    "poll_concurrency": "Parallel tuning-job reads in one poll.",
    "max_reported_errors": "Errors listed in a validation report (counting by code goes on).",
    "log_level": "DEBUG, INFO, WARNING or ERROR.",
}
"""Meanings for Settings fields without an attribute docstring (the docstring wins otherwise)."""


class StaleFileError(Exception):
    """A generated file or README section differs from what its source produces."""

    def __init__(self, path: Path, section: str) -> None:
        self.path = path
        self.section = section
        super().__init__(f"{path}: {section} is stale; run `python -m deploy.gcp.generate --write`")


# --- Firestore indexes -------------------------------------------------------------------------


def indexes_document() -> str:
    """``firestore_indexes.json`` as the adapter's REQUIRED_COMPOSITE_INDEXES defines it."""
    from shared.adapters.firestore import REQUIRED_COMPOSITE_INDEXES  # noqa: PLC0415 - heavy import

    doc = {
        "about": "Generated from shared.adapters.firestore.REQUIRED_COMPOSITE_INDEXES by "
        "`python -m deploy.gcp.generate --write`; do not edit. Composite indexes of the jobs "
        "collection (query scope COLLECTION), each a list of [field, order].",
        "indexes": [[list(field) for field in index] for index in REQUIRED_COMPOSITE_INDEXES],
    }
    return json.dumps(doc, indent=1) + "\n"


# --- tables --------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def roles_markdown() -> str:
    """The role table: every grant of roles.json with its scope and reason."""
    table = roles_table()
    lines = [
        "| Principal | Role | On | Why |",
        "|---|---|---|---|",
    ]
    for g in table["grants"]:
        scope = table["resources"][g["on"]]
        if g["condition"]:
            scope += f" ({table['conditions'][g['condition']]}, IAM condition)"
        lines.append(
            f"| {_cell(table['principals'][g['principal']])} | `{g['role']}` | {_cell(scope)} | {_cell(g['reason'])} |"
        )
    return "\n".join(lines) + "\n"


def setting_docstrings(path: Path = SETTINGS_PY) -> dict[str, str]:
    """Attribute docstrings of the Settings dataclass (the string right after each field)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            body = node.body
            for current, following in itertools.pairwise(body):
                if (
                    isinstance(current, ast.AnnAssign)
                    and isinstance(current.target, ast.Name)
                    and isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)
                ):
                    docs[current.target.id] = " ".join(following.value.value.split())
    return docs


def _setting_default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{f.default}`" if f.default != "" else "(empty)"
    if f.default_factory is not dataclasses.MISSING:
        return "(empty)"
    return "required"


def settings_markdown() -> str:
    """The settings table: every Settings field, its variable, default, meaning and GCP source."""
    docs = setting_docstrings()
    lines = [
        "| Environment variable | Default | Meaning | Set in GCP from |",
        "|---|---|---|---|",
    ]
    for f in dataclasses.fields(Settings):
        meaning = docs.get(f.name) or SETTING_MEANINGS.get(f.name)
        if not meaning:
            raise StaleFileError(SETTINGS_PY, f"Settings.{f.name} has no docstring and no entry in SETTING_MEANINGS")
        env = f"`SFTPILOT_{f.name.upper()}`"
        if f.name == "project":
            env += " or `GOOGLE_CLOUD_PROJECT`"
        lines.append(
            f"| {env} | {_setting_default(f)} | {_cell(meaning)} | {_cell(SETTINGS_SOURCES.get(f.name, '?'))} |"
        )
    return "\n".join(lines) + "\n"


def _hcl_text(value: Any) -> str:
    """python-hcl2 keeps string quotes and ${} wrappers: show values as HCL would."""
    if isinstance(value, str):
        if value.startswith("${") and value.endswith("}"):
            return value[2:-1]
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def terraform_variables(path: Path = VARIABLES_TF) -> dict[str, dict[str, Any]]:
    """The variables of variables.tf: name -> {type, default (absent when required), description}."""
    import hcl2  # noqa: PLC0415 - dev dependency, only needed to generate and test

    with path.open(encoding="utf-8") as handle:
        parsed = hcl2.load(handle)
    out: dict[str, dict[str, Any]] = {}
    for block in parsed.get("variable", []):
        for raw_name, body in block.items():
            name = raw_name.strip('"')
            entry = {k: v for k, v in body.items() if k in ("type", "default", "description")}
            if isinstance(entry.get("description"), str):
                entry["description"] = entry["description"].strip('"')
            out[name] = entry
    return out


def variables_markdown() -> str:
    """The variables table (terraform.tfvars / deploy.sh)."""
    lines = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for name, spec in terraform_variables().items():
        default = "required" if "default" not in spec else f"`{_hcl_text(spec['default'])}`"
        lines.append(f"| `{name}` | {_hcl_text(spec['type'])} | {default} | {_cell(spec['description'])} |")
    return "\n".join(lines) + "\n"


SECTIONS: Final[dict[str, Callable[[], str]]] = {
    "roles": roles_markdown,
    "settings": settings_markdown,
    "variables": variables_markdown,
}


def render_sections(text: str, path: Path) -> str:
    """``text`` with every ``<!-- generated:NAME -->`` section regenerated."""
    for name, render in SECTIONS.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n)(.*?)(<!-- /generated:{name} -->)", flags=re.DOTALL)
        if not pattern.search(text):
            raise StaleFileError(path, f"the <!-- generated:{name} --> section is missing")
        body = render()

        def replace(match: re.Match[str], body: str = body) -> str:
            return match.group(1) + body + match.group(3)

        text = pattern.sub(replace, text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deploy.gcp.generate --write|--check [--readme PATH ...]``."""
    parser = argparse.ArgumentParser(prog="python -m deploy.gcp.generate", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="update the generated files")
    mode.add_argument("--check", action="store_true", help="fail when a generated file is stale")
    parser.add_argument(
        "--readme", type=Path, action="append", help=f"README files (default {README} and {TOP_README})"
    )
    args = parser.parse_args(argv)
    targets: list[tuple[Path, str]] = [(INDEXES_FILE, indexes_document())]
    try:
        for readme in args.readme or [README, TOP_README]:
            targets.append((readme, render_sections(readme.read_text(encoding="utf-8"), readme)))
        stale = [path for path, text in targets if not path.exists() or path.read_text(encoding="utf-8") != text]
        if args.write:
            for path, text in targets:
                if path in stale:
                    path.write_text(text, encoding="utf-8")
                    print(f"updated {path}")
        elif stale:
            raise StaleFileError(stale[0], "generated content")
    except (StaleFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
