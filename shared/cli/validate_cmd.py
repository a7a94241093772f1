"""``sftpilot validate PATH``: validate a Gemini tuning dataset before uploading it.

Exit codes: 0 valid, 1 invalid, 2 usage or I/O error (nothing is printed on stdout then; the
reason goes to stderr). ``--json`` prints exactly one JSON object on stdout:
``{"valid", "errors": [{"line", "path", "code", "severity", "message", "hint"}], "error_counts",
"stats", ...}`` (see ``shared.validation.report``). This interface is used by other tools: keep
it stable.

Every command that reads a dataset opens it through :func:`open_dataset`, the single seam where
other sources (gs://) plug in.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from typing import IO, Any, BinaryIO, Final

import click

from shared.cli.common import EXIT_FAILED, EXIT_OK, friendly_errors, render_table
from shared.validation import Issue, ValidationOptions, ValidationReport, validate_stream
from shared.validation.errors import DatasetReadError
from shared.validation.limits import DEFAULT_BASE_MODEL, LIMITS_READ_ON

PROGRESS_MIN_BYTES: Final = 4 * 1024 * 1024
"""Show a progress line only for inputs larger than this (or of unknown size)."""


def open_dataset(path: str) -> BinaryIO:
    """Open a dataset for reading as bytes: a local path, ``-`` (stdin) or ``gs://bucket/name[#gen]``.

    The one place where a dataset location becomes a stream. ``gs://`` objects are streamed
    through the GCS adapter (project from ``GOOGLE_CLOUD_PROJECT``, default ``local``; set
    ``STORAGE_EMULATOR_HOST`` - e.g. ``eval "$(sftpilot local env)"`` - for the local stack).
    Raises :class:`DatasetReadError` with a clear reason when the input cannot be opened.

    >>> open_dataset("no/such/train.jsonl")
    Traceback (most recent call last):
    ...
    shared.validation.errors.DatasetReadError: cannot read no/such/train.jsonl: no such file
    """
    if path == "-":
        return sys.stdin.buffer
    if path.startswith("gs://"):
        from shared.adapters.gcs import open_gcs_uri  # noqa: PLC0415 - only gs:// needs the GCS client
        from shared.errors import BlobNotFoundError, BlobReadError  # noqa: PLC0415
        from shared.settings import ClientSettings  # noqa: PLC0415

        try:
            return open_gcs_uri(path, project=ClientSettings.from_env().project or "local")
        except ValueError as exc:
            raise DatasetReadError(path, str(exc)) from None
        except BlobNotFoundError:
            raise DatasetReadError(path, "no such object (or bucket)") from None
        except BlobReadError as exc:
            raise DatasetReadError(path, exc.reason) from None
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DatasetReadError(path, "no such file") from None
    except IsADirectoryError:
        raise DatasetReadError(path, "is a directory, not a JSONL file") from None
    except PermissionError:
        raise DatasetReadError(path, "permission denied") from None
    except OSError as exc:
        raise DatasetReadError(path, exc.strerror or str(exc)) from None


def dataset_context(path: str, stream: BinaryIO) -> AbstractContextManager[BinaryIO]:
    """Close what :func:`open_dataset` opened, but never standard input."""
    return nullcontext(stream) if path == "-" else stream


def dataset_size(stream: Any) -> int | None:
    """The size in bytes of an opened dataset, when it can be known without reading it."""
    try:
        stat = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = getattr(stream, "size", None)
        return size if isinstance(size, int) else None
    import stat as stat_module  # noqa: PLC0415 - only needed here

    return stat.st_size if stat_module.S_ISREG(stat.st_mode) else None


class TerminalProgress:
    """A one-line progress display on a terminal (carriage return, no extra dependency).

    Call it with the bytes read so far; it redraws at most 5 times a second. ``close()``
    erases the line.
    """

    def __init__(self, label: str, total: int | None, stream: IO[str] | None = None) -> None:
        self._label = label
        self._total = total
        self._stream = stream or sys.stderr
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    @classmethod
    def maybe(cls, label: str, total: int | None, enabled: bool | None = None) -> TerminalProgress | None:
        """A progress display when wanted: explicitly, or for big inputs on an interactive stderr."""
        if enabled is None:
            enabled = sys.stderr.isatty() and (total is None or total > PROGRESS_MIN_BYTES)
        return cls(label, total) if enabled else None

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last_draw < 0.2:
            return
        self._last_draw = now
        elapsed = max(now - self._started, 1e-6)
        rate = done / elapsed / 1e6
        text = f"{self._label}: {done / 1e6:,.1f} MB"
        if self._total:
            text += f" of {self._total / 1e6:,.1f} MB ({min(100.0, 100 * done / self._total):.0f}%)"
        text += f", {rate:,.0f} MB/s"
        self._stream.write("\r" + text + "\x1b[K")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the progress line (if anything was drawn)."""
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def run_validation(path: str, options: ValidationOptions, show_progress: bool | None = None) -> ValidationReport:
    """Open ``path`` through :func:`open_dataset` and validate it (with a progress line when useful)."""
    stream = open_dataset(path)
    with dataset_context(path, stream):
        size = dataset_size(stream)
        if size is not None and options.size_bytes is None:
            options = _with_size(options, size)
        progress = TerminalProgress.maybe(f"validating {path}", size, show_progress)
        try:
            return validate_stream(stream, options, progress=progress)
        finally:
            if progress is not None:
                progress.close()


def _with_size(options: ValidationOptions, size: int) -> ValidationOptions:
    from dataclasses import replace  # noqa: PLC0415

    return replace(options, size_bytes=size)


@click.command("validate")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the report) on stdout.")
@click.option(
    "--max-errors",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="List at most this many errors (and as many warnings); all are still counted.",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs, to estimate billable training tokens.")
@click.option(
    "--role",
    type=click.Choice(["training", "validation"]),
    default="training",
    show_default=True,
    help="Which file of the job this is (the limits differ).",
)
@click.option(
    "--base-model",
    default=DEFAULT_BASE_MODEL,
    show_default=True,
    help="Base model: the row of the limits table to check against (README, Validation).",
)
@click.option(
    "--adapter-size", type=click.IntRange(min=1), help="LoRA adapter size to check against the model's allowed sizes."
)
@click.option(
    "--progress/--no-progress", "show_progress", default=None, help="Progress line on stderr (default: auto)."
)
@friendly_errors
def validate(
    path: str,
    as_json: bool,
    max_errors: int,
    epochs: int | None,
    role: str,
    base_model: str,
    adapter_size: int | None,
    show_progress: bool | None,
) -> None:
    """Validate the Gemini supervised-tuning JSONL dataset at PATH (a local file or - for stdin).

    Every problem is listed with its line, JSON path, stable code and a fix. Exit code 0 when
    the dataset is valid, 1 when it is not, 2 when it cannot be read.
    """
    options = ValidationOptions(
        role=role,
        base_model=base_model,
        epochs=epochs,
        adapter_size=adapter_size,
        max_errors=max_errors,
        source_name=path,
    )
    report = run_validation(path, options, show_progress)
    if as_json:
        click.echo(json.dumps(report.to_json_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(render_report(report))
    sys.exit(EXIT_OK if report.valid else EXIT_FAILED)


# ------------------------------------------------------------------------ human output ---


def _limits_row(report: ValidationReport) -> str:
    """The row of the dated limits table the file was checked against, and where it comes from."""
    limits = report.limits
    adapters = "/".join(str(size) for size in limits.adapter_sizes)
    row = (
        f"{limits.max_tokens_per_example:,} tokens/example, adapter {adapters}, "
        f"<= {limits.max_validation_examples:,} validation examples"
    )
    documented = "" if limits.documented else " (values not documented; 2.5 Flash row assumed)"
    return f"{row}{documented}; docs read {LIMITS_READ_ON}: {limits.source}"


def render_report(report: ValidationReport) -> str:
    """The human-readable report: a summary table, then the listed errors and warnings."""
    stats = report.stats
    options = report.options
    errors = report.errors_count
    warnings = report.warnings_count
    model = report.limits.name if report.base_model_known else options.base_model
    verdict = "VALID" if report.valid else "INVALID"
    verdict += f": {errors:,} error{'s' * (errors != 1)}, {warnings:,} warning{'s' * (warnings != 1)}"
    rows: list[list[str]] = [
        ["file", options.source_name or "<stream>"],
        ["result", verdict],
        ["role / base model", f"{options.role} / {model}"],
        ["limits", _limits_row(report)],
        [
            "examples",
            f"{stats.examples:,} ({stats.lines:,} lines, {stats.blank_lines:,} blank, {stats.bytes_read:,} bytes)",
        ],
    ]
    unmeasured = stats.examples - stats.measured_examples
    if unmeasured > 0:  # the statistics below count only the examples that could be read
        rows.append(["measured", f"{stats.measured_examples:,} ({unmeasured:,} unreadable: no contents list)"])
    if report.foreign_format:
        rows.append(["format", f"{report.foreign_format} (not Gemini): {report.convert_command}"])
    if stats.measured_examples:
        rows += [
            ["turns per example", f"min {stats.turns_min} / mean {stats.turns_mean} / max {stats.turns_max}"],
            ["input chars", _distribution(stats.input_chars)],
            ["output chars", _distribution(stats.output_chars)],
            ["input tokens (est.)", _distribution(stats.input_tokens)],
            ["output tokens (est.)", _distribution(stats.output_tokens)],
            [
                "system instruction",
                f"{stats.examples_with_system_instruction:,} of {stats.measured_examples:,} measured examples "
                f"({_percent(stats.examples_with_system_instruction, stats.measured_examples)})",
            ],
        ]
        media = ", ".join(f"{kind} {count:,}" for kind, count in stats.media_parts.items() if count)
        if media:
            rows.append(["media parts", f"{media} (in {stats.multimodal_examples:,} examples)"])
        if stats.function_call_parts or stats.function_response_parts:
            rows.append(
                [
                    "function calling",
                    f"{stats.function_call_parts:,} calls, {stats.function_response_parts:,} responses",
                ]
            )
        rows.append(
            ["duplicates", f"{stats.duplicates:,}" + ("" if stats.duplicate_detection_complete else " (partial)")]
        )
        rows.append(
            [
                "over token limit",
                f"{stats.over_token_limit_examples:,} (limit {report.limits.max_tokens_per_example:,})",
            ]
        )
        billable = stats.estimated_billable_tokens
        billing = f"{stats.dataset_tokens:,} tokens per epoch (est.)"
        billing += (
            f"; x {stats.epochs} epochs = {billable:,} billable" if billable is not None else " (pass --epochs E)"
        )
        rows.append(["training tokens", billing])
    lines = [render_table(["sftpilot validate", ""], rows), ""]
    lines += _issue_section("Errors", [i for i in report.issues if i.severity == "error"], errors)
    lines += _issue_section("Warnings", [i for i in report.issues if i.severity == "warning"], warnings)
    if report.error_counts:
        lines.append("Counts by code:")
        lines += [f"  {code:<32} {count:,}" for code, count in sorted(report.error_counts.items())]
    return "\n".join(lines).rstrip()


def _issue_section(title: str, issues: list[Issue], total: int) -> list[str]:
    if not total:
        return []
    shown = f"first {len(issues):,} of {total:,}" if len(issues) < total else f"{total:,}"
    lines = [f"{title} ({shown}):"]
    for issue in issues:
        where = f"line {issue.line}" if issue.line is not None else "file"
        path = f"  {issue.path}" if issue.path else ""
        lines.append(f"  {where}{path}  {issue.code}: {issue.message}")
        lines.append(f"      fix: {issue.hint}")
    if len(issues) < total:
        lines.append(f"  ... {total - len(issues):,} more not listed (raise --max-errors to see them)")
    lines.append("")
    return lines


def _distribution(dist: Any) -> str:
    return f"mean {dist.mean:,} / p50 {dist.p50:,} / p95 {dist.p95:,} / max {dist.max:,}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"
