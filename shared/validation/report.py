"""What the validator returns: issues, per-code counts and dataset statistics.

:meth:`ValidationReport.to_json_dict` is the exact object ``sftpilot validate --json`` prints and
the intake writes next to a dataset; keep its keys stable (add, never rename).

Issue ordering: file-level issues (``line`` is ``None``: empty file, too few/many examples,
file too large, adapter size, unknown base model, foreign format of the whole file) come first,
then per-line issues in file order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from shared.validation.codes import CODES, ERROR, WARNING, Severity
from shared.validation.limits import ModelLimits
from shared.validation.options import ValidationOptions

SCHEMA_VERSION: Final = 1

EXACT_LIMIT: Final = 1 << 14
"""Histogram values below this are counted exactly; larger ones in log buckets (< 0.8 % error)."""


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: where (1-based line, JSON path), what (stable code), how bad, and how to fix.

    ``line`` is ``None`` for file-level issues. ``path`` is a JSON path inside the line such as
    ``contents[2].parts[0].text``; it is ``""`` when the issue concerns the whole line or file.
    """

    line: int | None
    path: str
    code: str
    severity: Severity
    message: str
    hint: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view with the keys of the ``--json`` output."""
        return {
            "line": self.line,
            "path": self.path,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }


def bucket_key(value: int) -> int:
    """The histogram key for ``value``: exact below :data:`EXACT_LIMIT`, else a negative log bucket."""
    if value < EXACT_LIMIT:
        return value
    shift = value.bit_length() - 8
    return -((shift << 8) | (value >> shift))


def bucket_value(key: int) -> int:
    """The smallest value a histogram key stands for (exact for small values)."""
    if key >= 0:
        return key
    packed = -key
    return (packed & 0xFF) << (packed >> 8)


@dataclass(frozen=True, slots=True)
class Distribution:
    """Summary of one per-example quantity: exact mean and max, p50/p95 from a bounded histogram."""

    count: int
    total: int
    mean: float
    p50: int
    p95: int
    max: int

    @classmethod
    def from_histogram(cls, counts: Mapping[int, int], total: int, maximum: int) -> Distribution:
        """Build from a histogram (keys from :func:`bucket_key`) plus the exact sum and max."""
        count = sum(counts.values())
        if count == 0:
            return cls(count=0, total=0, mean=0.0, p50=0, p95=0, max=0)
        ordered = sorted((bucket_value(key), n) for key, n in counts.items())
        return cls(
            count=count,
            total=total,
            mean=round(total / count, 2),
            p50=min(_nearest_rank(ordered, count, 50), maximum),
            p95=min(_nearest_rank(ordered, count, 95), maximum),
            max=maximum,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"mean": self.mean, "p50": self.p50, "p95": self.p95, "max": self.max, "sum": self.total}


def _nearest_rank(ordered: list[tuple[int, int]], count: int, percent: int) -> int:
    rank = max(1, -(-(percent * count) // 100))  # ceil(percent/100 * n) in integers
    seen = 0
    for value, n in ordered:
        seen += n
        if seen >= rank:
            return value
    return ordered[-1][0]


@dataclass(frozen=True, slots=True)
class DatasetStats:
    """Statistics of one dataset file (estimates are marked as such; see ``limits.py``)."""

    lines: int
    blank_lines: int
    examples: int
    """Non-blank lines: every line meant as an example, parseable or not."""
    measured_examples: int
    """Examples with a ``contents`` list: the basis of every distribution below."""
    bytes_read: int
    crlf_lines: int
    turns_min: int
    turns_mean: float
    turns_max: int
    input_chars: Distribution
    output_chars: Distribution
    input_tokens: Distribution
    output_tokens: Distribution
    examples_with_system_instruction: int
    system_instruction_chars: int
    media_parts: dict[str, int]
    multimodal_examples: int
    function_call_parts: int
    function_response_parts: int
    duplicates: int
    duplicate_detection_complete: bool
    over_token_limit_examples: int
    dataset_tokens: int
    """Estimated tokens of the examples the service would train on (over-limit ones are dropped)."""
    epochs: int | None
    token_estimate_method: str = field(default="ceil(chars/4) per side + fixed media costs")

    @property
    def estimated_billable_tokens(self) -> int | None:
        """``dataset_tokens x epochs`` (tuning is billed per training token), None without epochs."""
        return None if self.epochs is None else self.dataset_tokens * self.epochs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (the ``stats`` object of the ``--json`` output)."""
        measured = self.measured_examples
        all_chars = self.input_chars.total + self.output_chars.total
        return {
            "lines": self.lines,
            "blank_lines": self.blank_lines,
            "examples": self.examples,
            "measured_examples": measured,
            "bytes": self.bytes_read,
            "crlf_lines": self.crlf_lines,
            "turns": {"min": self.turns_min, "mean": self.turns_mean, "max": self.turns_max},
            "chars": {"input": self.input_chars.to_dict(), "output": self.output_chars.to_dict()},
            "tokens": {
                "input": self.input_tokens.to_dict(),
                "output": self.output_tokens.to_dict(),
                "method": self.token_estimate_method,
            },
            "system_instruction": {
                "examples": self.examples_with_system_instruction,
                "share_of_examples": round(self.examples_with_system_instruction / measured, 4) if measured else 0.0,
                "share_of_chars": round(self.system_instruction_chars / all_chars, 4) if all_chars else 0.0,
            },
            "multimodal": {"parts": dict(self.media_parts), "examples": self.multimodal_examples},
            "function_calling": {
                "function_call_parts": self.function_call_parts,
                "function_response_parts": self.function_response_parts,
            },
            "duplicates": self.duplicates,
            "duplicate_detection_complete": self.duplicate_detection_complete,
            "over_token_limit_examples": self.over_token_limit_examples,
            "billing": {
                "dataset_tokens": self.dataset_tokens,
                "epochs": self.epochs,
                "estimated_billable_tokens": self.estimated_billable_tokens,
            },
        }


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The outcome of validating one dataset file."""

    valid: bool
    issues: list[Issue]
    """The listed issues: at most ``max_errors`` errors and ``max_errors`` warnings (plus file-level ones)."""
    error_counts: dict[str, int]
    """Every code seen and how often, errors and warnings, including those beyond the listing cap."""
    stats: DatasetStats
    options: ValidationOptions
    limits: ModelLimits
    base_model_known: bool
    foreign_format: str | None = None
    convert_command: str | None = None

    @property
    def example_count(self) -> int:
        """Non-blank lines of the file."""
        return self.stats.examples

    @property
    def errors_count(self) -> int:
        """How many error issues were found (listed or not)."""
        return sum(n for code, n in self.error_counts.items() if CODES[code].severity == ERROR)

    @property
    def warnings_count(self) -> int:
        """How many warning issues were found (listed or not)."""
        return sum(n for code, n in self.error_counts.items() if CODES[code].severity == WARNING)

    @property
    def listing_truncated(self) -> bool:
        """True when more issues were found than listed."""
        return sum(self.error_counts.values()) > len(self.issues)

    def to_json_dict(self) -> dict[str, Any]:
        """The exact ``sftpilot validate --json`` object (JSON-serialisable)."""
        return {
            "valid": self.valid,
            "errors": [issue.to_dict() for issue in self.issues],
            "error_counts": dict(sorted(self.error_counts.items())),
            "stats": self.stats.to_dict(),
            "errors_count": self.errors_count,
            "warnings_count": self.warnings_count,
            "listing_truncated": self.listing_truncated,
            "max_errors": self.options.max_errors,
            "foreign_format": self.foreign_format,
            "convert_command": self.convert_command,
            "source": self.options.source_name,
            "role": self.options.role,
            "base_model": self.options.base_model,
            "base_model_known": self.base_model_known,
            "limits": self.limits.to_dict(),
            "schema_version": SCHEMA_VERSION,
        }
