"""The deployed entry module: the four Cloud Functions, re-exported from their thin handlers.

Deploy with ``--source`` = the packaged folder and ``--entry-point`` = one of the names below;
locally ``functions-framework --source functions/main.py --target <name>`` serves the same code.
"""

from __future__ import annotations

from functions.api import jobs_api
from functions.completion import on_tuning_completed
from functions.poller import poll_tuning_jobs
from functions.upload import on_dataset_uploaded

__all__ = ["jobs_api", "on_dataset_uploaded", "on_tuning_completed", "poll_tuning_jobs"]
