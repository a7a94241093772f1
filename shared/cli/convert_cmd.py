"""``sftpilot convert IN OUT --from FORMAT``: rewrite a foreign tuning dataset in Gemini format.

Streams line by line. Lines that cannot be converted are left out and reported (line number and
reason) on stderr; the exit code is then 1. Exit 2 for usage or I/O errors. OUT is written
atomically (a temporary file renamed at the end); ``-`` writes to stdout.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

import click

from shared.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, friendly_errors
from shared.cli.validate_cmd import TerminalProgress, dataset_context, dataset_size, open_dataset
from shared.validation.convert import NOTE_DESCRIPTIONS, ConversionResult, convert_stream
from shared.validation.errors import DatasetReadError
from shared.validation.formats import CONVERT_FORMATS


@click.command("convert")
@click.argument("input_path", metavar="IN")
@click.argument("output_path", metavar="OUT")
@click.option(
    "--from",
    "source_format",
    type=click.Choice(CONVERT_FORMATS),
    required=True,
    help="The format of IN: openai (messages), prompt-completion, input-output (input_text/output_text).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the conversion summary as one JSON object on stderr.")
@click.option(
    "--max-errors",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="List at most this many lines that could not be converted (all are counted).",
)
@click.option(
    "--progress/--no-progress", "show_progress", default=None, help="Progress line on stderr (default: auto)."
)
@friendly_errors
def convert(
    input_path: str,
    output_path: str,
    source_format: str,
    as_json: bool,
    max_errors: int,
    show_progress: bool | None,
) -> None:
    """Convert the dataset IN (local file or -) to Gemini tuning JSONL in OUT (file or -).

    system messages become systemInstruction, assistant becomes model; lines already in Gemini
    format are copied. Then check the result with `sftpilot validate OUT`.
    """
    if output_path != "-" and input_path != "-" and _same_file(input_path, output_path):
        click.echo("error: IN and OUT are the same file; write the conversion to a new file", err=True)
        sys.exit(EXIT_USAGE)
    if output_path.startswith("gs://"):
        click.echo("error: OUT must be a local file or -; upload the result with `sftpilot upload`", err=True)
        sys.exit(EXIT_USAGE)
    source = open_dataset(input_path)
    with dataset_context(input_path, source):
        progress = TerminalProgress.maybe(f"converting {input_path}", dataset_size(source), show_progress)
        try:
            result = _convert_to(output_path, source, source_format, max_errors, progress)
        finally:
            if progress is not None:
                progress.close()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2), err=True)
    else:
        click.echo(render_result(result, output_path), err=True)
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)


def _convert_to(
    output_path: str,
    source: BinaryIO,
    source_format: str,
    max_errors: int,
    progress: TerminalProgress | None,
) -> ConversionResult:
    if output_path == "-":
        result = convert_stream(source, sys.stdout.buffer, source_format, max_failures=max_errors, progress=progress)
        sys.stdout.buffer.flush()
        return result
    target = Path(output_path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise DatasetReadError(output_path, f"cannot write here: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "wb") as sink:
            result = convert_stream(source, sink, source_format, max_failures=max_errors, progress=progress)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return result


def _same_file(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.abspath(first) == os.path.abspath(second)


def render_result(result: ConversionResult, output_path: str) -> str:
    """Human summary: counts, notes, and the lines that could not be converted."""
    target = "stdout" if output_path == "-" else output_path
    lines = [f"converted {result.converted:,} example(s) from {result.source_format} format to {target}"]
    for note, count in sorted(result.notes.items()):
        lines.append(f"  {count:,} line(s): {NOTE_DESCRIPTIONS.get(note, note)}")
    if result.failure_count:
        lines.append(f"{result.failure_count:,} line(s) could not be converted and were left out:")
        lines += [f"  line {failure.line}: {failure.reason}" for failure in result.failures]
        if result.failure_count > len(result.failures):
            lines.append(f"  ... {result.failure_count - len(result.failures):,} more (raise --max-errors)")
    if output_path != "-":
        lines.append(f"next: sftpilot validate {shlex.quote(output_path)}")
    return "\n".join(lines)
