"""Exceptions of the validation package.

Problems *in* a dataset are never exceptions (they are :class:`~shared.validation.report.Issue`
objects in the report). Failing to *read* the dataset is.
"""

from __future__ import annotations

from shared.errors import SftpilotError


class DatasetReadError(SftpilotError):
    """The dataset could not be opened or read (missing file, permission, I/O error, bad scheme)."""

    code = "E_DATASET_READ"

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read {path}: {reason}")
