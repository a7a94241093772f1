"""Fetch a job's dataset into its work folder.

``gs://bucket/object`` is read with google-cloud-storage (which talks to fake-gcs-server when
``STORAGE_EMULATOR_HOST`` is set, anonymously); ``file:///abs/path`` and plain paths are
copied (handy in tests). Anything else fails the job with a message saying what is accepted.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse


class DatasetFetchError(Exception):
    """The dataset could not be read; ``str()`` is the message shown in the job's ``error``."""

    def __init__(self, uri: str, reason: str, role: str = "training") -> None:
        self.uri = uri
        self.reason = reason
        self.role = role
        super().__init__(f"Failed to read the {role} dataset {uri}: {reason}")


def fetch_dataset(uri: str, destination: Path, project: str | None = None, role: str = "training") -> Path:
    """Copy the dataset at ``uri`` to ``destination`` and return ``destination``.

    ``role`` (training / validation) only makes the error message precise.
    """
    try:
        return _fetch(uri, destination, project)
    except DatasetFetchError as error:
        raise DatasetFetchError(error.uri, error.reason, role) from error.__cause__


def _fetch(uri: str, destination: Path, project: str | None) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if uri.startswith("gs://"):
        _fetch_gcs(uri, destination, project)
    elif uri.startswith("file://"):
        _copy_local(uri, Path(unquote(urlparse(uri).path)), destination)
    elif "://" in uri or uri.startswith("projects/"):
        raise DatasetFetchError(
            uri, "unsupported dataset location; use a gs://bucket/object.jsonl URI (or a local path)"
        )
    else:
        _copy_local(uri, Path(uri), destination)
    return destination


def _copy_local(uri: str, source: Path, destination: Path) -> None:
    if not source.is_file():
        raise DatasetFetchError(uri, "no such file")
    try:
        shutil.copyfile(source, destination)
    except OSError as error:
        raise DatasetFetchError(uri, error.strerror or str(error)) from error


def _fetch_gcs(uri: str, destination: Path, project: str | None) -> None:
    bucket_name, _, object_name = uri.removeprefix("gs://").partition("/")
    if not bucket_name or not object_name:
        raise DatasetFetchError(uri, "a gs:// URI needs a bucket and an object name")
    try:
        from google.api_core import exceptions as gexc  # noqa: PLC0415 - heavy, only when needed
        from google.auth import exceptions as auth_exceptions  # noqa: PLC0415
        from google.cloud import storage  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
    except ImportError as error:  # pragma: no cover - core dependency
        raise DatasetFetchError(uri, f"google-cloud-storage is not installed: {error}") from error
    try:
        client = storage.Client(project=project)
        blob = client.bucket(bucket_name).blob(object_name)
        blob.download_to_filename(str(destination))
    except gexc.NotFound as error:
        destination.unlink(missing_ok=True)
        raise DatasetFetchError(uri, "object or bucket not found") from error
    except gexc.Forbidden as error:
        destination.unlink(missing_ok=True)
        raise DatasetFetchError(uri, f"permission denied: {error.message}") from error
    except auth_exceptions.DefaultCredentialsError as error:
        raise DatasetFetchError(
            uri, "no Google credentials (set STORAGE_EMULATOR_HOST for fake-gcs-server, or configure ADC)"
        ) from error
    except (gexc.GoogleAPIError, OSError, auth_exceptions.GoogleAuthError) as error:
        destination.unlink(missing_ok=True)
        raise DatasetFetchError(uri, f"{type(error).__name__}: {error}") from error
