"""``sftpilot upload``: validate locally, then put a dataset where the upload trigger sees it.

Order matters: the validation set and ``tuning.yaml`` are uploaded *before* the training file,
because the training file's finalize event starts the job and intake reads the others then.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from shared.cli.common import EXIT_FAILED, cli_command, friendly_errors, print_json
from shared.errors import InvalidParameterError
from shared.intake import DATASET_SUFFIX, name_problem
from shared.labels import LINEAGE_RE
from shared.records import record_key
from shared.settings import ClientSettings

MAX_OBJECT_NAME_BYTES = 1024
"""Cloud Storage's limit on object names, in UTF-8 bytes (https://cloud.google.com/storage/docs/objects#naming)."""


def dataset_object_name(prefix: str, lineage: str, name: str) -> str:
    """``datasets/<lineage>/<name>.jsonl``, checked with the same rules the upload trigger applies,
    so a name it would reject (or ignore) never reaches the bucket.

    >>> dataset_object_name("datasets/", "faq", "v1")
    'datasets/faq/v1.jsonl'
    """
    if not LINEAGE_RE.match(lineage):
        expected = "1-63 lowercase letters, digits, '-' or '_' (it becomes a label)"
        raise InvalidParameterError("lineage", lineage, expected)
    object_name = f"{prefix}{lineage}/{name}{DATASET_SUFFIX}"
    problem = name_problem(object_name, prefix)
    if problem is None and len(object_name.encode()) > MAX_OBJECT_NAME_BYTES:
        problem = f"is {len(object_name.encode())} bytes long in UTF-8; Cloud Storage allows {MAX_OBJECT_NAME_BYTES}"
    if problem is not None or name.endswith(".validation"):
        reason = problem or "is a validation-set name: it is picked up beside a training file, never trained on"
        raise InvalidParameterError("name", name, f"a usable dataset name ({object_name} {reason})")
    return object_name


def _validate(path: Path, role: str, base_model: str | None) -> bool:
    from shared.validation import ValidationOptions, validate_stream  # noqa: PLC0415 - fast CLI start-up

    options = ValidationOptions(role=role, base_model=base_model or "gemini-2.5-flash", source_name=str(path))
    with path.open("rb") as stream:
        report = validate_stream(stream, options)
    errors = [i for i in report.issues if i.severity == "error"]
    for issue in errors[:10]:
        where = f"line {issue.line}" if issue.line else "file"
        click.echo(f"  {where} {issue.path}: {issue.code} {issue.message} (fix: {issue.hint})", err=True)
    verdict = "valid" if report.valid else f"INVALID ({sum(report.error_counts.values())} problem(s))"
    click.echo(f"{path}: {verdict}, {report.example_count} examples ({role})", err=True)
    return bool(report.valid)


@click.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--lineage", required=True, help="The lineage folder (datasets/<lineage>/).")
@click.option(
    "--name",
    help="Object name without .jsonl (default: the file's stem, e.g. plain for plain.txt). Any name the "
    "upload trigger accepts, including non-ASCII (UTF-8) characters.",
)
@click.option(
    "--validation",
    "validation_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Validation set; uploaded as <name>.validation.jsonl before the training file.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="tuning.yaml for the lineage folder; uploaded before the training file.",
)
@click.option("--base-model", help="Validate against this base model's limits (default from tuning.yaml or flash).")
@click.option("--force", is_flag=True, help="Upload even if local validation fails (intake will reject it).")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def upload(
    file: Path,
    lineage: str,
    name: str | None,
    validation_file: Path | None,
    config_file: Path | None,
    base_model: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Validate FILE locally, then upload it to gs://$SFTPILOT_BUCKET/datasets/<lineage>/."""
    settings = ClientSettings.from_env()
    bucket_name = settings.require("bucket")
    stem = name or file.stem  # plain.txt -> plain, v1.jsonl -> v1 (as --help says)
    object_name = dataset_object_name(settings.datasets_prefix, lineage, stem)
    valid = _validate(file, "training", base_model)
    if validation_file is not None:
        valid = _validate(validation_file, "validation", base_model) and valid
    if not valid and not force:
        click.echo("not uploaded: fix the problems above or pass --force", err=True)
        sys.exit(EXIT_FAILED)

    from google.cloud.storage import Client  # noqa: PLC0415 - heavy import only for this command

    client = Client(project=settings.project or None)
    bucket = client.bucket(bucket_name)
    folder = object_name.rsplit("/", 1)[0]
    if config_file is not None:
        bucket.blob(f"{folder}/tuning.yaml").upload_from_filename(str(config_file), content_type="application/yaml")
    if validation_file is not None:
        bucket.blob(f"{folder}/{stem}.validation.jsonl").upload_from_filename(
            str(validation_file), content_type="application/jsonl"
        )
    blob = bucket.blob(object_name)
    blob.upload_from_filename(str(file), content_type="application/jsonl")
    generation = int(blob.generation or 0)
    job_id = record_key(bucket_name, object_name, generation)
    result = {"uri": f"gs://{bucket_name}/{object_name}#{generation}", "job_id": job_id}
    if as_json:
        print_json(result)
    else:
        click.echo(f"uploaded {result['uri']}\nfollow it with: {cli_command()} jobs watch {job_id}")
