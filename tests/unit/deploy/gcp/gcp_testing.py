"""Shared constants and helpers of the deployment checks (imported by conftest and the tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[4]
GCP = REPO / "deploy" / "gcp"
TF = GCP / "terraform"
EXAMPLE_VARS = TF / "terraform.tfvars.example"
PROJECT_NUMBER = "123456789012"

# Every variable away from its default, to exercise the conditional branches of both derivations.
VARIANT_VARS = """\
project = "acme-ml-dev"
bucket  = "acme-dev-data"
region  = "europe-west4"
name_prefix = "sft-dev"
managed_by = "sft-dev"
datasets_prefix = "in/"
reports_prefix = "out/reports/"
events_topic = "sft-events"
dead_letter_topic = "sft-dlq"
dead_letter_max_attempts = 20
bucket_versioning = true
source_bucket = "acme-dev-src"
firestore_database = "(default)"
firestore_location = "eur3"
create_firestore_database = false
jobs_collection = "sft_jobs"
effects_collection = "sft_effects"
poll_schedule = "*/2 * * * *"
tuning_location = "europe-west4"
max_event_age_seconds = 3600
lease_seconds = 900
stall_after_seconds = 7200
poll_concurrency = 4
max_reported_errors = 20
log_level = "DEBUG"
api_audience = "https://api.acme.example"
api_invokers = [
  "user:ana@acme.example",
  "serviceAccount:ci@acme-ml-dev.iam.gserviceaccount.com", # trailing comma next
]
api_cancel_principals = ["ana@acme.example", "bo@acme.example"]
tuning_service_accounts = ["tuner@acme-ml-prod.iam.gserviceaccount.com"]
grant_tuning_agent_bucket_read = false
default_base_model = "gemini-2.5-flash-lite"
default_epochs = 5
default_adapter_size = 8
default_learning_rate_multiplier = 0.5
default_labels = { team = "ml", "cost-center" = "cc42" }
smoke_test_enabled = false
cleanup_enabled = true
cleanup_keep_last = 3
cleanup_dry_run = true
cleanup_on_failure = true
"""


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals: strip them, recursively."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    return value


def load_terraform_module() -> dict[str, dict[str, Any]]:
    """Every block of the module by kind: {"resource": {"type.name": body}, "variable": {...}, ...}."""
    import hcl2

    blocks: dict[str, dict[str, Any]] = {}
    for path in sorted(TF.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for kind, entries in parsed.items():
            for entry in entries:
                if kind in ("resource", "data"):
                    for rtype, named in entry.items():
                        for name, body in named.items():
                            blocks.setdefault(kind, {})[f"{unquote(rtype)}.{unquote(name)}"] = body
                elif kind in ("variable", "output"):
                    for name, body in entry.items():
                        blocks.setdefault(kind, {})[unquote(name)] = body
                else:
                    blocks.setdefault(kind, {})[f"{path.name}:{len(blocks.get(kind, {}))}"] = entry
    return blocks


def strings_in(value: Any) -> list[str]:
    """Every string anywhere in a parsed HCL value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *strings_in(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []
