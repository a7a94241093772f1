"""BlobStore contract: FakeBlobStore and GcsBlobStore (fake-gcs-server) behave the same."""

from __future__ import annotations

import pytest

from shared.errors import BlobNotFoundError, BlobReadError


def test_write_returns_generation_and_stat_describes_the_object(blob_harness):
    store, bucket = blob_harness.store, blob_harness.bucket
    generation = store.write_bytes(bucket, "reports/a.json", b'{"ok":true}', "application/json")

    info = store.stat(bucket, "reports/a.json")

    assert info is not None
    assert (info.bucket, info.name, info.generation, info.size) == (bucket, "reports/a.json", generation, 11)
    assert info.content_type == "application/json"
    assert info.updated is not None


def test_overwrite_creates_a_newer_generation(blob_harness):
    store, bucket = blob_harness.store, blob_harness.bucket
    first = store.write_bytes(bucket, "x.txt", b"one", "text/plain")
    second = store.write_bytes(bucket, "x.txt", b"two!", "text/plain")

    assert second > first
    assert store.stat(bucket, "x.txt").generation == second
    assert store.read_bytes(bucket, "x.txt") == b"two!"


def test_stat_and_read_bytes_of_a_missing_object_return_none(blob_harness):
    store, bucket = blob_harness.store, blob_harness.bucket
    assert store.stat(bucket, "nope.txt") is None
    assert store.read_bytes(bucket, "nope.txt") is None


def test_read_bytes_refuses_objects_above_the_limit(blob_harness):
    store, bucket = blob_harness.store, blob_harness.bucket
    store.write_bytes(bucket, "big.yaml", b"x" * 100, "text/yaml")

    assert store.read_bytes(bucket, "big.yaml", max_bytes=100) == b"x" * 100
    with pytest.raises(BlobReadError) as err:
        store.read_bytes(bucket, "big.yaml", max_bytes=99)
    assert err.value.uri == f"gs://{bucket}/big.yaml"


def test_open_read_streams_the_exact_bytes_line_by_line(blob_harness):
    store, bucket = blob_harness.store, blob_harness.bucket
    lines = [f'{{"i": {i}, "pad": "{"p" * (i % 97)}"}}\n'.encode() for i in range(12_000)]
    payload = b"".join(lines)  # ~1 MB: several ranged reads on the real adapter
    store.write_bytes(bucket, "datasets/l/big.jsonl", payload, "application/jsonl")

    with store.open_read(bucket, "datasets/l/big.jsonl") as stream:
        got = list(stream)

    assert got == lines


def test_open_read_pins_a_generation(blob_harness):
    store, bucket = blob_harness.store, blob_harness.bucket
    old = store.write_bytes(bucket, "d.jsonl", b"old\n", "application/jsonl")
    new = store.write_bytes(bucket, "d.jsonl", b"new\n", "application/jsonl")

    with store.open_read(bucket, "d.jsonl", generation=new) as stream:
        assert stream.read() == b"new\n"
    with pytest.raises(BlobNotFoundError) as err, store.open_read(bucket, "d.jsonl", generation=old):
        pass
    assert str(old) in err.value.uri


def test_open_read_of_a_missing_object_raises_not_found_on_open(blob_harness):
    store, bucket = blob_harness.store, blob_harness.bucket
    with pytest.raises(BlobNotFoundError) as err, store.open_read(bucket, "datasets/none.jsonl"):
        pass
    assert err.value.uri == f"gs://{bucket}/datasets/none.jsonl"


def test_a_stream_broken_mid_read_raises_blob_read_error(blob_harness):
    store, bucket = blob_harness.store, blob_harness.bucket
    payload = b"0123456789abcdef\n" * 200_000  # 3.4 MB
    store.write_bytes(bucket, "datasets/l/flaky.jsonl", payload, "application/jsonl")
    trigger = blob_harness.arrange_mid_stream_failure("datasets/l/flaky.jsonl", 17)

    with store.open_read(bucket, "datasets/l/flaky.jsonl") as stream:
        first = stream.readline()
        trigger()
        with pytest.raises(BlobReadError) as err:
            stream.read()

    assert first == b"0123456789abcdef\n"
    assert err.value.uri.startswith(f"gs://{bucket}/datasets/l/flaky.jsonl")


def test_list_returns_objects_under_a_prefix_in_name_order(blob_harness):
    store, bucket = blob_harness.store, blob_harness.bucket
    for name in ("datasets/b/2.jsonl", "datasets/a/1.jsonl", "reports/r.json", "datasets/a/0.jsonl"):
        store.write_bytes(bucket, name, b"{}\n", "application/jsonl")

    listed = [info.name for info in store.list(bucket, "datasets/")]

    assert listed == ["datasets/a/0.jsonl", "datasets/a/1.jsonl", "datasets/b/2.jsonl"]
    assert [info.name for info in store.list(bucket, "datasets/a/")] == listed[:2]
    assert list(store.list(bucket, "nothing/")) == []
