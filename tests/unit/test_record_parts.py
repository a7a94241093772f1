"""The typed record parts: every stored dict round-trips exactly, old records load unchanged."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.record_parts import PARTS, CleanupRecord, Part, SmokeTestRecord, TuningView
from shared.records import JobRecord

FIXTURE = Path(__file__).parents[1] / "fixtures" / "records" / "main_records.json"

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def known_keys(cls: type[Part]) -> list[str]:
    return [f.name for f in fields(cls) if f.name not in ("extra", "_stored_keys")]


def stored_dicts(cls: type[Part]) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of the part's keys with any JSON values, plus unknown keys."""
    known = st.dictionaries(st.sampled_from(known_keys(cls)), json_values, max_size=len(known_keys(cls)))
    unknown = st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k not in known_keys(cls)), json_values)
    return st.tuples(known, unknown).map(lambda pair: {**pair[0], **pair[1]})


def built_parts(cls: type[Part]) -> st.SearchStrategy[Part]:
    """Parts built in code (how writers make them), with unknown keys in ``extra``."""
    values = st.fixed_dictionaries({}, optional=dict.fromkeys(known_keys(cls), json_values))
    extra = st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k not in known_keys(cls)), json_values)
    return st.tuples(values, extra).map(lambda pair: cls(**pair[0], extra=pair[1]))


@pytest.mark.parametrize("cls", PARTS, ids=lambda c: c.__name__)
@settings(max_examples=60)
@given(data=st.data())
def test_every_stored_dict_round_trips_exactly(cls: type[Part], data: st.DataObject) -> None:
    stored = data.draw(stored_dicts(cls))
    part = cls.from_dict(stored)
    assert part.to_dict() == stored
    assert json.dumps(part.to_dict()) == json.dumps(stored)  # the key order too
    assert {k: v for k, v in part.extra.items()} == {k: v for k, v in stored.items() if k not in known_keys(cls)}


@pytest.mark.parametrize("cls", PARTS, ids=lambda c: c.__name__)
@settings(max_examples=60)
@given(data=st.data())
def test_every_built_part_round_trips(cls: type[Part], data: st.DataObject) -> None:
    part = data.draw(built_parts(cls))
    assert cls.from_dict(part.to_dict()) == part


def test_a_key_another_version_added_survives_an_update() -> None:
    stored = {"state": "JOB_STATE_RUNNING", "tuned_model": None, "quota_wait": {"since": "x"}}
    updated = replace(TuningView.from_dict(stored), state="JOB_STATE_SUCCEEDED", tuned_model="m@1")
    assert updated.to_dict() == {"state": "JOB_STATE_SUCCEEDED", "tuned_model": "m@1", "quota_wait": {"since": "x"}}


def test_sparse_keys_are_absent_until_set_and_plain_keys_are_always_written() -> None:
    assert CleanupRecord(retired_by="job2").to_dict() == {"retired_by": "job2"}
    assert SmokeTestRecord(event_id="e", skipped="off", passed=None).to_dict() == {
        "event_id": "e",
        "skipped": "off",
        "passed": None,
    }
    assert TuningView().to_dict()["tuned_model"] is None


def test_records_written_by_the_current_version_load_and_reserialise_identically() -> None:
    """The fixture was written by main's code paths before the parts were typed: intake, poller,
    completion with smoke test/cleanup/dry run/skip, a failed job, a user cancel, a rejection (the
    first nine, re-serialised by main's JobRecord after it gained ``smoke_progress``/``gate``/``cost``),
    then main's gate (promoted, rejected, retired), budget (estimate, over budget, actual cost),
    paused smoke test, quota wait, metric curves and continuous tuning (``pre_tuned_model``)."""
    stored = json.loads(FIXTURE.read_text())
    assert {r["status"] for r in stored} >= {"SUCCEEDED", "FAILED", "CANCELLING", "PENDING", "REJECTED", "RUNNING"}
    for data in stored:
        record = JobRecord.from_dict(data)
        again = record.to_dict()
        assert again == data
        assert json.dumps(again, ensure_ascii=False) == json.dumps(data, ensure_ascii=False)


def test_the_fixture_exercises_every_part() -> None:
    stored = json.loads(FIXTURE.read_text())
    for name in ("validation", "config", "tuning", "error", "smoke_test", "cleanup", "cancel_request"):
        assert any(r[name] for r in stored), name
    for name in ("smoke_progress", "gate", "cost"):
        assert any(r[name] for r in stored), name
    assert {(r["gate"] or {}).get("verdict") for r in stored} >= {"PROMOTED", "REJECTED"}
    assert any("pre_tuned_model" in (r["config"] or {}) for r in stored)
    assert any((r["validation"] or {}).get("cost") for r in stored)
    tuning_keys = {key for r in stored for key in (r["tuning"] or {})}
    assert tuning_keys >= {"base_model", "detail_state", "waiting_for_quota", "quota_wait_ended_at", "curves"}
    assert any("skipped" in (r["smoke_test"] or {}) for r in stored)
    assert any("retirement" in (r["cleanup"] or {}) for r in stored)


def test_every_key_main_writes_is_a_typed_field() -> None:
    """Nothing main's writers store ends up in ``extra``: each key has a field of its part."""
    for data in json.loads(FIXTURE.read_text()):
        record = JobRecord.from_dict(data)
        for name in ("validation", "config", "tuning", "error", "smoke_test", "smoke_progress", "cleanup"):
            part = getattr(record, name)
            assert part is None or dict(part.extra) == {}, (name, dict(part.extra))
        for part in (record.gate, record.cost, record.cancel_request):
            assert part is None or dict(part.extra) == {}, dict(part.extra)
