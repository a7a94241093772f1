"""Gemini supervised-tuning dataset validation and conversion (pure: no cloud dependency).

Example:
    >>> import io
    >>> from shared.validation import ValidationOptions, validate_stream
    >>> report = validate_stream(io.BytesIO(b'{"contents": []}\\n'), ValidationOptions(max_errors=10))
    >>> report.valid, sorted(report.error_counts)
    (False, ['E_CONTENTS_EMPTY', 'W_FEW_EXAMPLES'])
"""

from __future__ import annotations

from shared.validation.codes import CODES, IssueCode, Severity
from shared.validation.errors import DatasetReadError
from shared.validation.limits import MODEL_LIMITS, ModelLimits, resolve_limits
from shared.validation.options import ValidationOptions
from shared.validation.report import DatasetStats, Distribution, Issue, ValidationReport
from shared.validation.validator import validate_stream

__all__ = [
    "CODES",
    "MODEL_LIMITS",
    "DatasetReadError",
    "DatasetStats",
    "Distribution",
    "Issue",
    "IssueCode",
    "ModelLimits",
    "Severity",
    "ValidationOptions",
    "ValidationReport",
    "resolve_limits",
    "validate_stream",
]
