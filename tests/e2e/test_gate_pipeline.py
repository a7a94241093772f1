"""End to end on the real local stack: the quality gate rejects a bad model (the live model
survives) and promotes a good one (its predecessors are retired).

How the outcomes are made deterministic (not a matter of learning luck): every training example
of a version has the *same* answer, whatever the question, and the tiny test model is trained
40 epochs at learning-rate multiplier 10, long enough to memorise a constant answer of a few
words exactly (greedy decoding, fixed seed). The gate's prompts (smoke_test.prompts) all carry
the reference ``alpha beta gamma delta``, and the gate compares by ROUGE-L:

* v1 answers ``alpha beta``              -> ROUGE-L 0.67 on every prompt; the base model's
  untrained output shares no word (0.0): PROMOTED, the lineage's first live model;
* v2 (the bad dataset) answers ``zulu zulu`` -> 0.0 on every prompt vs the live v1's 0.67:
  4 losses, interval entirely below 0: REJECTED; v1 stays live and is not retired;
* v3 (the good dataset) answers ``alpha beta gamma delta`` -> 1.0 vs v1's 0.67: 4 wins:
  PROMOTED; cleanup (keep_last 1) retires v1 and v2.

Even a partly memorised answer keeps the order: any v2 output without the reference's words
scores 0 < 0.67, and any v3 output with more of them than v1's scores above it. One stack
serves all three versions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from deploy.local.stack import DEFAULT_MODEL_MAP, LocalStack, StackComponents
from shared.cleanup import iter_lineage_candidates
from shared.errors import NotFoundError
from shared.gate import find_live
from shared.ports import JobQuery
from shared.record_parts import GateRecord
from shared.records import JobRecord
from shared.settings import Settings
from shared.states import JobStatus
from shared.wiring import Services

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LINEAGE = "gatebot"
REFERENCE = "alpha beta gamma delta"
QUESTIONS = [
    "How do I reset my password?",
    "Where is my invoice?",
    "How do I cancel my plan?",
    "Can I change my username?",
    "What are your opening hours?",
    "Do you ship abroad?",
    "How do I contact support?",
    "Is there a student discount?",
]
TUNING_YAML = f"""
base_model: gemini-2.5-flash
epochs: 40
learning_rate_multiplier: 10
adapter_size: 4
export_last_checkpoint_only: true
smoke_test:
  prompts:
    - {{prompt: "Where is my order?", reference: "{REFERENCE}"}}
    - {{prompt: "Hello?", reference: "{REFERENCE}"}}
    - {{prompt: "What is the refund policy?", reference: "{REFERENCE}"}}
    - {{prompt: "Can I pay by card?", reference: "{REFERENCE}"}}
  max_output_tokens: 32
cleanup:
  enabled: true
  keep_last: 1
gate:
  enabled: true
  against: [live, base]
  metric: rougeL
"""


def dataset(answer: str) -> bytes:
    rows = [
        {"contents": [{"role": "user", "parts": [{"text": q}]}, {"role": "model", "parts": [{"text": answer}]}]}
        for q in QUESTIONS * 2
    ]
    return "\n".join(json.dumps(r) for r in rows).encode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(
        tmp_path_factory.mktemp("gate-stack"),
        components=StackComponents.FULL,
        poll_interval=1.0,
        model_map=dict.fromkeys(DEFAULT_MODEL_MAP, "tiny-llama"),
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()


def wait_for_gate(services: Services, name: str, timeout: float = 400.0) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in services.jobs.query(JobQuery(lineage=LINEAGE, limit=20)).records:
            decided = record.gate or (record.status.is_terminal and record.status is not JobStatus.SUCCEEDED)
            if record.dataset.name.endswith(name) and decided and not record.has_pending_outbox:
                return record
        time.sleep(1.0)
    raise AssertionError(f"no gate verdict for {name} within {timeout}s")


def model_exists(services: Services, record: JobRecord) -> bool:
    try:
        services.tuning.get_model(str(record.tuning.tuned_model if record.tuning else None))
    except NotFoundError:
        return False
    return True


def test_a_bad_model_is_rejected_and_a_good_one_promoted_on_the_local_stack(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import storage

    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env(stack.function_environment())
    services = Services(settings=settings)
    bucket = storage.Client(project=stack.project).bucket(stack.bucket)
    folder = f"{settings.datasets_prefix}{LINEAGE}"
    bucket.blob(f"{folder}/tuning.yaml").upload_from_string(TUNING_YAML)

    bucket.blob(f"{folder}/v1.jsonl").upload_from_string(dataset("alpha beta"))
    v1 = wait_for_gate(services, "/v1.jsonl")
    assert v1.status is JobStatus.SUCCEEDED, v1.error
    assert v1.gate is not None and v1.gate.verdict == "PROMOTED", v1.gate

    bucket.blob(f"{folder}/v2.jsonl").upload_from_string(dataset("zulu zulu"))
    v2 = wait_for_gate(services, "/v2.jsonl")
    gate2 = v2.gate or GateRecord()
    assert gate2.verdict == "REJECTED", gate2
    vs_live = next(c for c in gate2.comparisons if c["against"] == "live")
    assert (vs_live["losses"], vs_live["wins"]) == (4, 0)
    assert gate2.live_before == v1.id
    assert model_exists(services, v1) and model_exists(services, v2)  # on_reject: keep
    live = find_live(iter_lineage_candidates(services.jobs, LINEAGE))
    assert live is not None and live.id == v1.id

    bucket.blob(f"{folder}/v3.jsonl").upload_from_string(dataset(REFERENCE))
    v3 = wait_for_gate(services, "/v3.jsonl")
    gate3 = v3.gate or GateRecord()
    assert gate3.verdict == "PROMOTED", gate3
    assert next(c for c in gate3.comparisons if c["against"] == "live")["wins"] == 4
    deadline = time.monotonic() + 120
    while model_exists(services, v1) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert not model_exists(services, v1), "v1 (the previous live model) was not retired after v3's promotion"
    assert not model_exists(services, v2)
    assert model_exists(services, v3)
    report = bucket.blob(str(gate3.report_uri).split("/", 3)[3]).download_as_bytes()
    assert json.loads(report)["verdict"] == "PROMOTED"
