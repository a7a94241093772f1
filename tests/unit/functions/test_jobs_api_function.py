"""The deployed ``jobs_api`` entry point, in-process through functions-framework, on fakes.

Includes a schemathesis run of ``shared/openapi.yaml`` against the real app: every documented
operation is called with generated parameters and every response must match the document.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import functions_framework
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

import shared.wiring as wiring
from shared.adapters.fakes import FakeJobStore, FakeTuningBackend
from shared.records import DatasetRef, new_record, utcnow
from shared.settings import Settings
from shared.states import JobStatus

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "test-token"


def _app(monkeypatch, jobs: FakeJobStore):
    services = wiring.Services(
        settings=Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p", "SFTPILOT_BUCKET": "bkt", "SFTPILOT_API_TOKEN": TOKEN})
    )
    services.__dict__["jobs"] = jobs
    services.__dict__["tuning"] = FakeTuningBackend()
    wiring.install_services(services)
    return functions_framework.create_app("jobs_api", str(ROOT / "functions/jobs_api.py"), "http")


def test_list_through_the_real_entry_point(monkeypatch):
    jobs = FakeJobStore()
    rec = new_record(DatasetRef("bkt", "datasets/faq/a.jsonl", 3, "faq"), utcnow()).transition(
        JobStatus.QUEUED, utcnow()
    )
    jobs.create(rec)
    client = _app(monkeypatch, jobs).test_client()
    response = client.get("/jobs?state=QUEUED", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json()["jobs"][0]["id"] == rec.id
    assert client.get("/jobs").status_code == 401
    assert (
        client.get("/jobs?limit=-1", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()["error"]["details"][
            "parameter"
        ]
        == "limit"
    )


SCHEMA = schemathesis.openapi.from_path(str(ROOT / "shared/openapi.yaml"))


@SCHEMA.auth()
class _StaticToken:
    """The local stack's bearer token; schemathesis leaves it off in its missing-auth scenarios."""

    def get(self, case, context):
        return TOKEN

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def api_app(monkeypatch):
    jobs = FakeJobStore()
    rec = new_record(DatasetRef("bkt", "datasets/faq/a.jsonl", 3, "faq"), utcnow())
    jobs.create(rec.transition(JobStatus.QUEUED, utcnow()))
    return _app(monkeypatch, jobs)


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_document_matches_implementation(case, api_app):
    case.operation.schema.app = api_app  # the checks' own replays go through the same WSGI app
    response = case.call(app=api_app)
    content_type = {name.lower(): values for name, values in response.headers.items()}.get("content-type", [""])[0]
    from_framework = response.status_code == 404 and content_type.startswith("text/html")
    if from_framework:
        # Paths with control characters (e.g. a newline in the id) never match the framework's
        # catch-all route, so Flask answers before our function runs; nothing of ours to check.
        assert any(ord(c) < 32 for c in unquote(case.formatted_path)), case.formatted_path
        return
    assert content_type == "application/json"
    # page_token is opaque: a pattern-valid but forged token is rightly a 400, so the "schema-valid
    # data must be accepted" check does not apply. Content types are asserted above instead of by
    # schemathesis, whose replays (e.g. with a newline in the path) also reach Flask's HTML 404.
    case.validate_response(
        response,
        excluded_checks=[checks.positive_data_acceptance, checks.content_type_conformance],
        transport_kwargs={"app": api_app},
    )
    assert response.status_code < 500
