"""functions/main.py loads only the handler of the target that is looked up (cold start).

Each check runs in a fresh interpreter: the test process has long since imported everything.
No timing here (that is ``bench/cold_start.py``); only which modules a lookup loads.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import functions.main

REPO = Path(__file__).resolve().parents[3]

_PROBE = """
import json, sys
import functions.main as m
for target in sys.argv[1:]:
    getattr(m, target)
print(json.dumps(sorted(k for k in sys.modules if k.startswith(("functions.", "matplotlib", "shared.report_chart")))))
"""


def _loaded_after(*targets: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *targets], check=True, capture_output=True, text=True, cwd=REPO, timeout=120
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_functions_main_loads_no_handler_and_no_matplotlib() -> None:
    assert _loaded_after() == {"functions.main"}


@pytest.mark.parametrize(
    ("target", "module"), [("on_dataset_uploaded", "functions.intake"), ("poll_tuning_jobs", "functions.poller")]
)
def test_upload_and_poll_load_only_their_handler_and_no_matplotlib(target: str, module: str) -> None:
    assert _loaded_after(target) == {"functions.main", module}


def test_completion_loads_its_handler_but_not_the_chart_code() -> None:
    assert _loaded_after("on_tuning_completed") == {"functions.main", "functions.completion"}


def test_every_entry_point_resolves_to_the_function_of_its_module() -> None:
    for name, module in functions.main.HANDLER_MODULES.items():
        function = getattr(functions.main, name)
        assert function.__module__ == module
        assert function.__name__ == name
    assert sorted(functions.main.HANDLER_MODULES) == sorted(functions.main.__all__)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_function"):
        _ = functions.main.no_such_function


def test_type_checking_imports_match_the_lazy_table() -> None:
    # The ``if TYPE_CHECKING:`` imports are what mypy and deploy/gcp/package.py read.
    tree = ast.parse((REPO / "functions" / "main.py").read_text())
    imported = {
        alias.name: node.module
        for top in tree.body
        if isinstance(top, ast.If)
        for node in top.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imported == functions.main.HANDLER_MODULES
