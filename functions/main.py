"""The deployed entry module: the four Cloud Functions, each loaded from its thin handler on first use.

Deploy with ``--source`` = the packaged folder and ``--entry-point`` = one of the names below;
locally ``functions-framework --source functions/main.py --target <name>`` serves the same code.

Every deployed function loads this module, but runs only one of the four handlers, so a name
is imported only when it is looked up (PEP 562 module ``__getattr__``): a cold start of the
upload function never pays for the completion handler or matplotlib. functions-framework
finds its target with ``getattr(module, target)``, which lands here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # for type checkers and deploy/gcp/package.py (which reads these with ast)
    from functions.completion import on_tuning_completed
    from functions.intake import on_dataset_uploaded
    from functions.jobs_api import jobs_api
    from functions.poller import poll_tuning_jobs

HANDLER_MODULES: Final = {
    "jobs_api": "functions.jobs_api",
    "on_dataset_uploaded": "functions.intake",
    "on_tuning_completed": "functions.completion",
    "poll_tuning_jobs": "functions.poller",
}
"""Entry point -> the module that defines it (kept equal to the imports above by a test)."""

__all__ = ["jobs_api", "on_dataset_uploaded", "on_tuning_completed", "poll_tuning_jobs"]


def __getattr__(name: str) -> Any:
    """Import the handler module of entry point ``name`` (only that one) and return the function."""
    module = HANDLER_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    function = getattr(importlib.import_module(module), name)
    globals()[name] = function  # later lookups skip this hook
    return function


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
