"""Fuzzing the parsers that read user input: the dataset validator, tuning.yaml, and incoming events.

Zero crashes: the validator always returns a report whose issues carry a known code, a message, a
hint and (for line-level problems) a line inside the file; the config parser returns a config or a
``TuningConfigError`` whose every problem has a path, a message and a source; the event parsers
return an event or an ``EventParseError`` naming the field. Examples are bounded (``max_examples``,
no deadline) so the suite stays fast on two shared cores.
"""

from __future__ import annotations

import base64
import io
import json
import string
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.fakes import FakeBlobStore
from shared.completion_message import PUBSUB_MESSAGE_PUBLISHED, parse_completion_event
from shared.errors import EventParseError, TuningConfigError
from shared.tuning_config import TuningConfig, parse_tuning_yaml, resolve_config
from shared.upload_event import FINALIZED_EVENT_TYPE, parse_upload_event
from shared.validation import ValidationOptions, ValidationReport, validate_stream
from shared.validation.codes import CODES, FILE_LEVEL_CODES

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
WHOLE_FILE_CODES = FILE_LEVEL_CODES | {"E_FOREIGN_FORMAT"}


def check_report(report: ValidationReport, line_count: int) -> None:
    """The invariants of every report, whatever the input."""
    assert report.valid == (report.errors_count == 0)
    if not report.valid:
        assert any(issue.severity == "error" for issue in report.issues), "an invalid file lists an error"
    for issue in report.issues:
        assert issue.code in CODES and issue.severity == CODES[issue.code].severity
        assert issue.message.strip() and issue.hint.strip()
        if issue.code in WHOLE_FILE_CODES:
            continue
        assert issue.line is not None, f"{issue.code} does not name its line"
        assert 1 <= issue.line <= max(line_count, 1), (issue.line, line_count)
    json.dumps(report.to_json_dict())


def validate_both_ways(data: bytes) -> None:
    """As a file and as an iterable of lines; both must keep the invariants."""
    lines = data.count(b"\n") + 1
    check_report(validate_stream(io.BytesIO(data), ValidationOptions(max_errors=20)), lines)
    check_report(validate_stream(iter(io.BytesIO(data).readlines()), ValidationOptions(role="validation")), lines)


# --- validator: bytes, JSON-ish values, Gemini-like examples with mutations -------------------------


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash_the_validator(data: bytes):
    validate_both_ways(data)


line_bytes = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=80).map(str.encode),
    st.sampled_from([b"", b"{", b"[", b"\xef\xbb\xbf{}", b"\r", b"\x00", b"null", b'{"contents":[]}', b"\xff\xfe{"]),
)


@FUZZ
@given(st.lists(line_bytes, max_size=30), st.sampled_from([b"\n", b"\r\n"]))
def test_random_lines_never_crash_the_validator(lines: list[bytes], newline: bytes):
    validate_both_ways(newline.join(lines))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)


@FUZZ
@given(st.lists(json_values, min_size=1, max_size=25))
def test_random_json_lines_never_crash_the_validator(values: list[Any]):
    validate_both_ways(b"\n".join(json.dumps(v).encode() for v in values) + b"\n")


texts = st.text(min_size=1, max_size=30)
text_part = st.builds(lambda t: {"text": t}, texts)
file_part = st.builds(
    lambda mime, uri: {"fileData": {"mimeType": mime, "fileUri": uri}},
    # audio and video are limited to one file per example (limits.py): the valid-example generator
    # draws up to nine file parts, so it uses the kinds without such a small per-example limit
    st.sampled_from(["image/png", "image/jpeg", "application/pdf", "text/plain"]),
    st.builds(lambda n: f"gs://bucket/media/{n}", st.text(string.ascii_lowercase, min_size=1, max_size=8)),
)
inline_part = st.builds(lambda: {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
call_part = st.builds(
    lambda n: {"functionCall": {"name": n, "args": {"q": 1}}}, st.from_regex(r"[a-z_]{1,8}", fullmatch=True)
)


@st.composite
def gemini_examples(draw: st.DrawFn) -> dict[str, Any]:
    """A valid-looking Gemini SFT example: alternating user/model turns, optional system instruction."""
    turns = draw(st.integers(1, 3)) * 2
    contents = []
    for i in range(turns):
        role = "user" if i % 2 == 0 else "model"
        kinds = st.one_of(text_part, file_part, inline_part) if role == "user" else st.one_of(text_part, call_part)
        contents.append({"role": role, "parts": draw(st.lists(kinds, min_size=1, max_size=3))})
    example: dict[str, Any] = {"contents": contents}
    if draw(st.booleans()):
        example["systemInstruction"] = {"parts": [draw(text_part)]}
    return example


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside nested dicts/lists."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _get(root: Any, path: tuple) -> Any:
    for step in path:
        root = root[step]
    return root


def _set(root: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return root


def _delete(root: Any, path: tuple) -> Any:
    if not path:
        return {}
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return root


MUTATIONS = ["replace", "delete", "rename_key", "wrap_in_list", "duplicate_turn", "swap_roles", "weird_text"]


@st.composite
def mutated_example_lines(draw: st.DrawFn) -> bytes:
    """A Gemini-like example with 1-3 random structural mutations, serialised, maybe corrupted as bytes."""
    example = draw(gemini_examples())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(MUTATIONS))
        paths = _paths(example)
        path = draw(st.sampled_from(paths))
        try:
            if kind == "replace":
                example = _set(example, path, draw(json_values))
            elif kind == "delete":
                example = _delete(example, path)
            elif kind == "rename_key" and path and isinstance(path[-1], str):
                parent = example
                for step in path[:-1]:
                    parent = parent[step]
                new_key = draw(st.sampled_from(["role ", "Contents", "system_instruction", "file_data", "txt", ""]))
                parent[new_key] = parent.pop(path[-1])
            elif kind == "wrap_in_list":
                example = _set(example, path, [_get(example, path)])
            elif kind == "duplicate_turn" and isinstance(_get(example, ("contents",)), list) and example["contents"]:
                example["contents"].insert(0, example["contents"][0])
            elif kind == "swap_roles" and isinstance(_get(example, ("contents",)), list):
                for turn in example["contents"]:
                    if isinstance(turn, dict) and turn.get("role") in ("user", "model"):
                        turn["role"] = {"user": "model", "model": "user"}[turn["role"]]
            elif kind == "weird_text":
                example = _set(example, path, draw(st.sampled_from(["", " ", "\u0000", "\ud7ff" * 3, "x" * 5000])))
        except (KeyError, IndexError, TypeError):
            continue  # the path vanished with an earlier mutation (or the root is no object any more)
    line = json.dumps(example).encode()
    corruption = draw(st.sampled_from(["none", "none", "truncate", "bad_byte", "bom"]))
    if corruption == "truncate" and line:
        line = line[: draw(st.integers(0, len(line) - 1))]
    elif corruption == "bad_byte":
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\x00"])) + line[at:]
    elif corruption == "bom":
        line = b"\xef\xbb\xbf" + line
    return line


@settings(FUZZ, max_examples=120)
@given(
    st.lists(st.one_of(gemini_examples().map(lambda e: json.dumps(e).encode()), mutated_example_lines()), max_size=12)
)
def test_mutated_gemini_examples_never_crash_and_every_problem_names_its_line(lines: list[bytes]):
    validate_both_ways(b"\n".join(lines) + b"\n")


@settings(FUZZ, max_examples=30)
@given(st.lists(gemini_examples(), min_size=16, max_size=18))
def test_unmutated_gemini_examples_are_valid(examples: list[dict[str, Any]]):
    data = b"\n".join(json.dumps(e).encode() for e in examples) + b"\n"
    report = validate_stream(io.BytesIO(data), ValidationOptions())
    check_report(report, len(examples))
    assert report.valid, [(i.line, i.code, i.message) for i in report.issues if i.severity == "error"][:3]


RICH_EXAMPLE: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "tools": [{"functionDeclarations": [{"name": "lookup", "parameters": {"type": "object"}}]}],
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "What is on this picture?"},
                {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/cat.png"}},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            ],
        },
        {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": "cat"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"answer": "a cat"}}}]},
        {"role": "model", "parts": [{"text": "A cat."}]},
    ],
}


@pytest.mark.parametrize("depth", [255, 1000], ids=lambda d: f"depth{d}")
def test_a_deep_value_at_every_position_of_an_example_never_crashes(depth: int):
    """Systematic rather than random: every position of a rich example, as a deep list and a deep object."""
    for path in [p for p in _paths(RICH_EXAMPLE) if p]:
        for deep_value in ("[" * depth + '"x"' + "]" * depth, '{"a":' * depth + '"x"' + "}" * depth):
            marked = _set(json.loads(json.dumps(RICH_EXAMPLE)), path, "<deep>")
            line = json.dumps(marked).replace('"<deep>"', deep_value).encode()
            report = validate_stream(io.BytesIO(line + b"\n"), ValidationOptions())
            check_report(report, 1)
            # Only free-form JSON (functionCall.args, functionResponse.response and anything inside
            # them) may hold a deep value and stay valid. (With no minimum example count a one-line
            # file can be valid, so this assertion is no longer satisfied by E_TOO_FEW_EXAMPLES.)
            free_form = any(step in {"args", "response"} for step in path)
            assert not report.valid or free_form, path


# --- tuning.yaml ----------------------------------------------------------------------------------


def check_config_outcome(text: str | bytes, source: str = "fuzz.yaml") -> None:
    try:
        parse_tuning_yaml(text, source)
    except TuningConfigError as exc:
        assert exc.problems, "a rejection lists its problems"
        for problem in exc.problems:
            assert isinstance(problem.path, str) and problem.message.strip() and problem.source == source
        assert str(exc)


yaml_ish = st.text(alphabet=string.ascii_letters + string.digits + " :-[]{}#&*!|>'\",.?@`%\n\t_", max_size=300)


@FUZZ
@given(yaml_ish)
def test_random_yaml_ish_text_never_crashes_the_config_parser(text: str):
    check_config_outcome(text)
    check_config_outcome(text.encode("utf-8", errors="surrogatepass"))


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_config_parser(data: bytes):
    check_config_outcome(data)


KNOWN_KEYS = sorted(TuningConfig().to_dict())
config_values = st.one_of(
    json_values,
    st.integers(-5, 200),
    st.sampled_from([1, 2, 4, 8, 16, 3, 0.5, "gemini-2.5-flash", "{lineage}-{name}", "{bad}", "x" * 200, True, None]),
)
config_dicts = st.dictionaries(
    st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10)),
    st.one_of(
        config_values,
        st.dictionaries(
            st.sampled_from(["enabled", "prompts", "keep_last", "dry_run", "team", "from_validation", "typo"]),
            st.one_of(
                config_values,
                st.lists(
                    st.one_of(st.text(max_size=10), st.dictionaries(st.text(max_size=8), config_values, max_size=4)),
                    max_size=3,
                ),
            ),
            max_size=5,
        ),
    ),
    max_size=8,
)


@FUZZ
@given(config_dicts)
def test_random_config_mappings_are_accepted_or_rejected_with_paths(data: dict[str, Any]):
    try:
        config = TuningConfig.from_dict(data, "fuzz")
    except TuningConfigError as exc:
        for problem in exc.problems:
            assert problem.message.strip() and problem.source == "fuzz"
            named = any(problem.path == k or problem.path.startswith((f"{k}.", f"{k}[")) for k in data)
            assert named or problem.path in {"", "(top level)"}, problem
        return
    assert TuningConfig.from_dict(config.to_dict(), "round-trip") == config
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return
    check_config_outcome(text)


@FUZZ
@given(st.lists(st.one_of(yaml_ish, config_dicts.map(yaml.safe_dump)), min_size=2, max_size=2))
def test_random_layers_resolve_or_fail_with_every_problem_and_its_file(layers: list[str]):
    blobs = FakeBlobStore()
    blobs.put("b", "datasets/tuning.yaml", layers[0].encode())
    blobs.put("b", "datasets/faq/tuning.yaml", layers[1].encode())
    try:
        resolve_config(blobs, "b", "datasets/faq/v1.jsonl", "datasets/")
    except TuningConfigError as exc:
        sources = {p.source for p in exc.problems}
        assert sources <= {"gs://b/datasets/tuning.yaml", "gs://b/datasets/faq/tuning.yaml", "resolved config"}
        assert all(p.message.strip() for p in exc.problems)


# --- incoming events ------------------------------------------------------------------------------


attribute_values = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.sampled_from([FINALIZED_EVENT_TYPE]))


@FUZZ
@given(
    st.dictionaries(st.sampled_from(["id", "source", "type", "time", "traceparent", "x"]), attribute_values),
    st.one_of(
        json_values,
        st.binary(max_size=60),
        st.dictionaries(
            st.sampled_from(["bucket", "name", "generation", "size", "updated", "metageneration", "contentType"]),
            st.one_of(json_values, st.from_regex(r"[0-9]{1,20}", fullmatch=True)),
        ),
    ),
)
def test_random_upload_events_parse_or_name_the_bad_field(attributes: dict[str, Any], data: Any):
    try:
        event = parse_upload_event(attributes, data)
    except EventParseError as exc:
        assert exc.field and exc.expected and str(exc)
        return
    assert event.generation >= 0 and event.bucket and event.name


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


message_data = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(_b64),
    json_values.map(lambda v: _b64(json.dumps(v).encode())),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["job.succeeded", "job.failed", "smoke_test.passed", ""]), "job_id": json_values},
        optional={"event_id": json_values},
    ).map(lambda v: _b64(json.dumps(v).encode())),
)
messages = st.fixed_dictionaries(
    {"data": message_data},
    optional={
        "attributes": st.one_of(
            json_values, st.dictionaries(st.sampled_from(["type", "job_id", "event_id"]), st.text(max_size=10))
        ),
        "messageId": json_values,
        "publishTime": st.one_of(st.text(max_size=30), st.just("2026-11-21T10:00:00Z")),
    },
)


@FUZZ
@given(st.one_of(json_values, st.fixed_dictionaries({"message": st.one_of(json_values, messages)})))
def test_random_pubsub_messages_parse_or_name_the_bad_field(data: Any):
    try:
        message = parse_completion_event({"type": PUBSUB_MESSAGE_PUBLISHED, "id": "1"}, data)
    except EventParseError as exc:
        assert exc.field and exc.expected and str(exc)
        return
    assert message.event_type
    if message.is_handled:
        assert message.event_id and message.job_id
