"""BlobStore on Cloud Storage (google-cloud-storage); fake-gcs-server when ``STORAGE_EMULATOR_HOST`` is set.

Reads stream through ``Blob.open("rb")`` (ranged requests of ``chunk_size`` bytes) pinned to
one generation, behind a C-level ``io.BufferedReader`` so line iteration stays fast and memory
stays flat whatever the object size. Failures are mapped at this boundary: a missing object
is :class:`~shared.errors.BlobNotFoundError`, anything that breaks a read part-way is
:class:`~shared.errors.BlobReadError` (retryable).

Example:
    >>> store = GcsBlobStore(project="local")  # doctest: +SKIP
    >>> with store.open_read("bucket", "datasets/faq/v1.jsonl") as stream:  # doctest: +SKIP
    ...     for line in stream: ...
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Any

from google.api_core import exceptions as gexc
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import storage

from shared.errors import BlobNotFoundError, BlobReadError
from shared.ports import BlobInfo

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
"""Bytes per ranged download request (a multiple of 256 KiB)."""
_BUFFER_SIZE = 1024 * 1024


def _uri(bucket: str, name: str, generation: int | None = None) -> str:
    base = f"gs://{bucket}/{name}"
    return base if generation is None else f"{base}#{generation}"


class _MappedRawReader(io.RawIOBase):
    """Raw stream over a BlobReader that turns any mid-stream failure into BlobReadError."""

    def __init__(self, reader: IO[bytes], uri: str) -> None:
        super().__init__()
        self._reader = reader
        self._uri = uri

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            chunk = self._reader.read(len(view))
        except BlobReadError:
            raise
        except gexc.NotFound:
            raise BlobReadError(self._uri, "object was deleted or replaced while being read") from None
        except Exception as exc:  # any transport/server failure mid-stream is a failed read
            raise BlobReadError(self._uri, f"{type(exc).__name__}: {exc}") from exc
        size = len(chunk)
        view[:size] = chunk
        return size

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            super().close()


class BlobStream(io.BufferedReader):
    """A buffered stream over one object generation; knows its ``uri`` and ``size`` in bytes."""

    def __init__(self, raw: io.RawIOBase, uri: str, size: int) -> None:
        super().__init__(raw, _BUFFER_SIZE)
        self.uri = uri
        self.size = size


class GcsBlobStore:
    """:class:`shared.ports.BlobStore` on google-cloud-storage (client created on first use)."""

    def __init__(
        self, project: str, client: storage.Client | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> None:
        self.project = project
        self.chunk_size = chunk_size
        self._client = client

    @property
    def client(self) -> storage.Client:
        """The storage client (anonymous against the emulator, ADC in GCP)."""
        if self._client is None:
            self._client = storage.Client(project=self.project)
        return self._client

    def open_read(self, bucket: str, name: str, generation: int | None = None) -> AbstractContextManager[IO[bytes]]:
        """Stream an object, pinned to ``generation`` (or the live one at open time).

        Raises BlobNotFoundError when it (or that generation) does not exist; reads raise
        BlobReadError when the stream breaks part-way.
        """
        return self._open(bucket, name, generation)

    @contextmanager
    def _open(self, bucket: str, name: str, generation: int | None) -> Iterator[IO[bytes]]:
        stream = self.open_stream(bucket, name, generation)
        try:
            yield stream
        finally:
            stream.close()

    def open_stream(self, bucket: str, name: str, generation: int | None = None) -> BlobStream:
        """Like :meth:`open_read`, but the caller closes the returned stream (CLI seams)."""
        uri = _uri(bucket, name, generation)
        blob = self.client.bucket(bucket).blob(name, generation=generation)
        try:
            blob.reload()  # metadata: existence, and pins the generation for every ranged read
        except gexc.NotFound:
            raise BlobNotFoundError(uri) from None
        except Exception as exc:
            raise BlobReadError(uri, f"{type(exc).__name__}: {exc}") from exc
        reader = blob.open("rb", chunk_size=self.chunk_size)
        pinned = _uri(bucket, name, blob.generation)
        return BlobStream(_MappedRawReader(reader, pinned), pinned, int(blob.size or 0))

    def read_bytes(self, bucket: str, name: str, max_bytes: int = 1 << 20) -> bytes | None:
        """A small object in full, None if absent; BlobReadError if larger than ``max_bytes``."""
        uri = _uri(bucket, name)
        try:
            blob = self.client.bucket(bucket).get_blob(name)
            if blob is None:
                return None
            if blob.size is not None and blob.size > max_bytes:
                raise BlobReadError(uri, f"larger than {max_bytes} bytes ({blob.size})")
            data: bytes = blob.download_as_bytes()
        except gexc.NotFound:
            return None
        except BlobReadError:
            raise
        except Exception as exc:
            raise BlobReadError(uri, f"{type(exc).__name__}: {exc}") from exc
        if len(data) > max_bytes:  # replaced by a larger generation between stat and read
            raise BlobReadError(uri, f"larger than {max_bytes} bytes ({len(data)})")
        return data

    def write_bytes(self, bucket: str, name: str, data: bytes, content_type: str) -> int:
        """Write (overwrite) an object; returns its new generation."""
        blob = self.client.bucket(bucket).blob(name)
        blob.upload_from_string(data, content_type=content_type)
        generation = blob.generation
        if generation is None:  # pragma: no cover - the API always returns the resource
            blob.reload()
            generation = blob.generation
        return int(generation or 0)

    def stat(self, bucket: str, name: str) -> BlobInfo | None:
        """Metadata, or None when the object does not exist."""
        try:
            blob = self.client.bucket(bucket).get_blob(name)
        except gexc.NotFound:
            return None
        return None if blob is None else _info(bucket, blob)

    def list(self, bucket: str, prefix: str) -> Iterator[BlobInfo]:
        """Objects under ``prefix`` in name order (empty when the bucket does not exist)."""
        try:
            for blob in self.client.list_blobs(bucket, prefix=prefix):
                yield _info(bucket, blob)
        except gexc.NotFound:
            return


def _info(bucket: str, blob: storage.Blob) -> BlobInfo:
    return BlobInfo(
        bucket=bucket,
        name=blob.name,
        generation=int(blob.generation or 0),
        size=int(blob.size or 0),
        updated=blob.updated,
        content_type=blob.content_type,
    )


def parse_gs_uri(uri: str) -> tuple[str, str, int | None]:
    """``gs://bucket/name`` or ``gs://bucket/name#generation`` -> (bucket, name, generation).

    >>> parse_gs_uri("gs://b/datasets/faq/v1.jsonl#17")
    ('b', 'datasets/faq/v1.jsonl', 17)
    """
    if not uri.startswith("gs://"):
        raise ValueError(f"expected gs://BUCKET/OBJECT, got {uri!r}")
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    generation: int | None = None
    base, sep, suffix = name.rpartition("#")
    if sep and suffix.isdigit():
        name, generation = base, int(suffix)
    if not bucket or not name:
        raise ValueError(f"expected gs://BUCKET/OBJECT, got {uri!r}")
    return bucket, name, generation


def open_gcs_uri(uri: str, project: str) -> BlobStream:
    """Open ``gs://bucket/name[#generation]`` for streaming (the caller closes it).

    Raises ValueError for a malformed URI, BlobNotFoundError when the object (or bucket) does
    not exist, BlobReadError when GCS cannot be reached or no credentials are configured.
    """
    bucket, name, generation = parse_gs_uri(uri)
    try:
        return GcsBlobStore(project=project).open_stream(bucket, name, generation)
    except DefaultCredentialsError:
        raise BlobReadError(
            uri,
            "no Google credentials: run `gcloud auth application-default login`, "
            'or `eval "$(sftpilot local env)"` to use the local stack',
        ) from None
