"""A deployment's variables and everything derived from them (the gcloud path's half of the plan).

One variables file configures a deployment: ``deploy/gcp/terraform/terraform.tfvars``. Terraform
reads it natively; ``deploy.sh`` reads it through this module, which understands the literal
subset of HCL a variables file uses (strings, numbers, booleans, null, lists, maps, comments).
Why not python-hcl2: deploy.sh must run with only the core dependencies installed, and
python-hcl2 is a test-only (``dev``) dependency; a test checks both parsers agree on the example.
Everything both paths must agree on -- resource names, the functions' environment, the tuning
defaults file, the IAM grants, the Firestore indexes -- is derived here and, independently, in
``terraform/config.tf`` from the same inputs. A test evaluates ``config.tf`` with
``terraform console`` and checks the two derivations are identical.

Example:
    >>> plan = DeploymentVars.from_mapping({"project": "acme-ml", "bucket": "acme-ml-datasets"})
    >>> function_env(plan)["SFTPILOT_EVENTS_TOPIC"]
    'projects/acme-ml/topics/sftpilot-events'
    >>> functions(plan)["upload"].name
    'sftpilot-upload'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from shared.errors import SettingsError, SftpilotError, TuningConfigError
from shared.labels import LABEL_KEY_RE, is_label_value
from shared.settings import Settings
from shared.tuning_config import parse_tuning_yaml

GCP_DIR: Final = Path(__file__).resolve().parent
ROLES_FILE: Final = GCP_DIR / "roles.json"
INDEXES_FILE: Final = GCP_DIR / "firestore_indexes.json"
DEFAULT_VARS_FILE: Final = GCP_DIR / "terraform" / "terraform.tfvars"
EXAMPLE_VARS_FILE: Final = GCP_DIR / "terraform" / "terraform.tfvars.example"

RUNTIME: Final = "python312"
DEFAULTS_FILE_NAME: Final = "sftpilot-defaults.yaml"
"""The deployment's tuning defaults, written at the root of the function source."""
FUNCTION_SOURCE_ROOT: Final = "/workspace"
"""Where Cloud Functions (2nd gen, Python buildpack) places the source: also the working directory."""
DEAD_LETTER_HOLD_RETENTION: Final = "604800s"
SCHEDULER_ATTEMPT_DEADLINE: Final = "320s"
PLACEHOLDER_PROJECT_NUMBER: Final = "PROJECT_NUMBER"
APIS: Final = (
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
)
"""Services the deployment enables."""

ServiceAccountKey = Literal["upload", "poller", "completion", "api", "trigger", "scheduler", "build"]
SERVICE_ACCOUNT_KEYS: Final[tuple[ServiceAccountKey, ...]] = (
    "upload",
    "poller",
    "completion",
    "api",
    "trigger",
    "scheduler",
    "build",
)
SERVICE_AGENT_DOMAINS: Final = {
    "gcs_agent": "gs-project-accounts.iam.gserviceaccount.com",
    "pubsub_agent": "gcp-sa-pubsub.iam.gserviceaccount.com",
    "tuning_agent": "gcp-sa-vertex-tune.iam.gserviceaccount.com",
}
PUBLIC_MEMBERS: Final = frozenset({"allusers", "allauthenticatedusers"})
_MEMBER_RE: Final = re.compile(r"^(user|group|serviceAccount|domain):[^\s,]+$")
_PREFIX_RE: Final = re.compile(r"^[a-z][a-z0-9-]{1,17}[a-z0-9]$")
_PROJECT_RE: Final = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION_RE: Final = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
TUNING_REGIONS: Final = (
    "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast3", "asia-south1",
    "asia-southeast1", "australia-southeast1", "europe-central2", "europe-north1",
    "europe-southwest1", "europe-west1", "europe-west2", "europe-west3", "europe-west4",
    "europe-west6", "europe-west8", "europe-west9", "me-central1", "me-central2", "me-west1",
    "northamerica-northeast1", "southamerica-east1", "us-central1", "us-east1", "us-east4",
    "us-east5", "us-south1", "us-west1", "us-west4",
)  # fmt: skip
"""Regions where Gemini supervised tuning runs, from "Supported tuning job regions" on
https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning-region-settings
(read 2026-12-04; the ``us-*`` tail of the list was cut off in the copy we could read and is
taken from the Vertex AI locations page: re-check it when a region is refused). Terraform's
``tuning_location`` validation carries the same list (a test compares them)."""
BUCKET_NAME_MAX: Final = 63
"""Cloud Storage bucket names are 3-63 characters (https://cloud.google.com/storage/docs/buckets#naming)."""
_TOPIC_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$")


# --- errors ----------------------------------------------------------------------------------


class DeployVarsError(SftpilotError):
    """The deployment's variables file is unreadable or a variable is missing or invalid."""

    code = "E_DEPLOY_VARS"

    def __init__(self, source: str, variable: str, problem: str, line: int | None = None) -> None:
        self.source = source
        self.variable = variable
        self.problem = problem
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        subject = f"variable {variable!r}: " if variable else ""
        super().__init__(f"{where}: {subject}{problem}")


# --- the variables file (HCL literal subset) --------------------------------------------------


class _HclLiteralParser:
    """Recursive-descent parser for ``name = <literal>`` lines; no expressions, no templates."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0

    def line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    def fail(self, problem: str, variable: str = "") -> DeployVarsError:
        return DeployVarsError(self.source, variable, problem, self.line())

    def skip(self, newlines: bool = True) -> None:
        """Skip blanks and comments (and newlines unless told otherwise)."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            elif ch == "#" or self.text.startswith("//", self.pos):
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            elif self.text.startswith("/*", self.pos):
                end = self.text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.fail("unterminated /* comment")
                self.pos = end + 2
            else:
                return

    def identifier(self) -> str:
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*").match(self.text, self.pos)
        if not match:
            raise self.fail(f"expected a variable name, found {self.text[self.pos : self.pos + 20]!r}")
        self.pos = match.end()
        return match.group(0)

    def document(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        self.skip()
        while self.pos < len(self.text):
            name = self.identifier()
            self.skip(newlines=False)
            if not self.text.startswith("=", self.pos):
                raise self.fail("expected '=' after the variable name", name)
            self.pos += 1
            self.skip(newlines=False)
            if name in values:
                raise self.fail("set twice", name)
            values[name] = self.value(name)
            self.skip(newlines=False)
            if self.pos < len(self.text) and self.text[self.pos] not in "\n#/":
                raise self.fail("unexpected text after the value (one variable per line)", name)
            self.skip()
        return values

    def value(self, name: str) -> Any:
        if self.pos >= len(self.text):
            raise self.fail("missing value", name)
        ch = self.text[self.pos]
        if ch == '"':
            return self.string(name)
        if ch == "[":
            return self.sequence(name)
        if ch == "{":
            return self.mapping(name)
        if self.text.startswith("<<", self.pos):
            raise self.fail("heredoc strings are not supported here; use a quoted string", name)
        number = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?").match(self.text, self.pos)
        if number:
            self.pos = number.end()
            literal = number.group(0)
            return float(literal) if number.group(1) or number.group(2) else int(literal)
        word = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*").match(self.text, self.pos)
        if word and word.group(0) in {"true", "false", "null"}:
            self.pos = word.end()
            return {"true": True, "false": False, "null": None}[word.group(0)]
        found = word.group(0) if word else self.text[self.pos : self.pos + 20]
        raise self.fail(f"expected a literal value (string, number, bool, null, list, map), found {found!r}", name)

    def string(self, name: str) -> str:
        self.pos += 1  # opening quote
        out: list[str] = []
        escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise self.fail("unterminated string", name)
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                nxt = self.text[self.pos + 1 : self.pos + 2]
                if nxt in escapes:
                    out.append(escapes[nxt])
                    self.pos += 2
                    continue
                if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", self.text[self.pos + 2 : self.pos + 6]):
                    out.append(chr(int(self.text[self.pos + 2 : self.pos + 6], 16)))
                    self.pos += 6
                    continue
                raise self.fail(f"unknown escape \\{nxt}", name)
            if self.text.startswith(("${", "%{"), self.pos):
                raise self.fail("template expressions (${...}) are not allowed in the variables file", name)
            if self.text.startswith(("$${", "%%{"), self.pos):
                out.append(self.text[self.pos + 1 : self.pos + 3])
                self.pos += 3
                continue
            out.append(ch)
            self.pos += 1

    def sequence(self, name: str) -> list[Any]:
        self.pos += 1
        items: list[Any] = []
        while True:
            self.skip()
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return items
            items.append(self.value(name))
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("]", self.pos):
                raise self.fail("expected ',' or ']' in the list", name)

    def mapping(self, name: str) -> dict[str, Any]:
        self.pos += 1
        items: dict[str, Any] = {}
        while True:
            self.skip()
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return items
            key = self.string(name) if self.text.startswith('"', self.pos) else self.identifier()
            self.skip(newlines=False)
            if self.pos >= len(self.text) or self.text[self.pos] not in "=:":
                raise self.fail(f"expected '=' after map key {key!r}", name)
            self.pos += 1
            self.skip(newlines=False)
            items[key] = self.value(name)
            self.skip(newlines=False)
            if self.text.startswith(",", self.pos):
                self.pos += 1


def parse_tfvars(text: str, source: str = "terraform.tfvars") -> dict[str, Any]:
    """Parse a Terraform variables file made of literal values.

    Example:
        >>> parse_tfvars('project = "p" # mine\\nlabels = { team = "ml" }\\nn = [1, 2]\\n')
        {'project': 'p', 'labels': {'team': 'ml'}, 'n': [1, 2]}

    Raises:
        DeployVarsError: naming the line and variable of the first syntax problem.
    """
    return _HclLiteralParser(text, source).document()


# --- the variables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentVars:
    """Every variable of a deployment; same names, types and defaults as ``terraform/variables.tf``.

    Settings-backed tunables default to None, meaning "leave the environment variable unset and
    use the default in :class:`shared.settings.Settings`".
    """

    project: str
    bucket: str
    region: str = "us-central1"
    name_prefix: str = "sftpilot"
    managed_by: str = "sftpilot"
    datasets_prefix: str = "datasets/"
    reports_prefix: str = "reports/"
    events_topic: str = "sftpilot-events"
    dead_letter_topic: str = ""
    dead_letter_max_attempts: int = 10
    bucket_versioning: bool = False
    source_bucket: str = ""
    firestore_database: str = "sftpilot"
    firestore_location: str = ""
    create_firestore_database: bool = True
    jobs_collection: str = "jobs"
    effects_collection: str = "effects"
    poll_schedule: str = "* * * * *"
    tuning_location: str | None = None
    max_event_age_seconds: int | None = None
    lease_seconds: int | None = None
    stall_after_seconds: int | None = None
    poll_concurrency: int | None = None
    max_reported_errors: int | None = None
    log_level: str | None = None
    api_audience: str = ""
    api_invokers: tuple[str, ...] = ()
    api_cancel_principals: tuple[str, ...] = ()
    tuning_service_accounts: tuple[str, ...] = ()
    grant_tuning_agent_bucket_read: bool = True
    default_base_model: str = "gemini-2.5-flash"
    default_epochs: int | None = None
    default_adapter_size: int | None = None
    default_learning_rate_multiplier: float | None = None
    default_labels: Mapping[str, str] = field(default_factory=dict)
    smoke_test_enabled: bool = True
    cleanup_enabled: bool = False
    cleanup_keep_last: int = 1
    cleanup_dry_run: bool = False
    cleanup_on_failure: bool = False
    source_dir: str = ""

    def __post_init__(self) -> None:
        self._check()

    @classmethod
    def kinds(cls) -> dict[str, str]:
        """Variable name -> its annotation as written (``str``, ``int | None``, ``tuple[str, ...]``...)."""
        return {f.name: str(f.type) for f in fields(cls)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "variables") -> DeploymentVars:
        """Check names and types, fill defaults. Raises DeployVarsError naming the variable."""
        kinds = cls.kinds()
        unknown = sorted(set(values) - set(kinds))
        if unknown:
            raise DeployVarsError(source, unknown[0], f"unknown variable (known: {', '.join(sorted(kinds))})")
        for required in ("project", "bucket"):
            if not values.get(required):
                raise DeployVarsError(source, required, "required: set it in the variables file")
        typed = {name: _coerce_var(source, name, kinds[name], raw) for name, raw in values.items()}
        try:
            return cls(**typed)
        except DeployVarsError as exc:
            raise DeployVarsError(source, exc.variable, exc.problem) from None

    def _check(self) -> None:
        def bad(variable: str, problem: str) -> DeployVarsError:
            return DeployVarsError("variables", variable, problem)

        if not _PROJECT_RE.match(self.project):
            raise bad("project", f"{self.project!r} is not a project ID (6-30 chars of a-z, 0-9, -)")
        if not _REGION_RE.match(self.region):
            raise bad("region", f"{self.region!r} is not a region like us-central1")
        if self.tuning_location is not None and self.tuning_location not in TUNING_REGIONS:
            raise bad(
                "tuning_location",
                f"{self.tuning_location!r} does not offer Gemini supervised tuning; "
                f"use one of {', '.join(TUNING_REGIONS)}",
            )
        for name, bucket in (("bucket", self.bucket), ("source_bucket", self.effective_source_bucket)):
            if not 3 <= len(bucket) <= BUCKET_NAME_MAX:
                raise bad(
                    name,
                    f"bucket name {bucket!r} is {len(bucket)} characters; Cloud Storage allows 3-{BUCKET_NAME_MAX}"
                    + (
                        " (the default is '<bucket>-sources': shorten bucket or set source_bucket)"
                        if name == "source_bucket" and not self.source_bucket
                        else ""
                    ),
                )
        if not _PREFIX_RE.match(self.name_prefix):
            raise bad("name_prefix", "3-19 chars of a-z, 0-9 and -, starting with a letter")
        if not is_label_value(self.managed_by, allow_empty=False):
            raise bad("managed_by", "a label value: 1-63 chars of a-z, 0-9, _ and -")
        for name in ("events_topic", "dead_letter_topic"):
            value = getattr(self, name)
            if value and not _TOPIC_RE.match(value):
                raise bad(name, f"{value!r} is not a Pub/Sub topic ID")
        if not 5 <= self.dead_letter_max_attempts <= 100:
            raise bad("dead_letter_max_attempts", "Pub/Sub allows 5 to 100")
        if self.cleanup_keep_last < 1:
            raise bad("cleanup_keep_last", "at least 1 (the new model is always kept)")
        for member in self.api_invokers:
            if member.lower() in PUBLIC_MEMBERS or not _MEMBER_RE.match(member):
                raise bad(
                    "api_invokers",
                    f"{member!r} is not allowed: use user:, group:, serviceAccount: or domain: "
                    "members (the jobs API is never public)",
                )
        for email in self.api_cancel_principals:
            if "@" not in email or ":" in email or "," in email:
                raise bad("api_cancel_principals", f"{email!r}: plain e-mail addresses, no 'user:' prefix")
        for email in self.tuning_service_accounts:
            if not email.endswith(".gserviceaccount.com") or ":" in email or "," in email:
                raise bad("tuning_service_accounts", f"{email!r}: service-account e-mails, no 'serviceAccount:' prefix")
        if self.default_adapter_size is not None and self.default_adapter_size not in (1, 2, 4, 8, 16):
            raise bad("default_adapter_size", "one of 1, 2, 4, 8, 16")
        for key, value in self.default_labels.items():
            if not LABEL_KEY_RE.match(key) or not is_label_value(value, allow_empty=False):
                raise bad("default_labels", f"{key}={value!r} is not a valid GCP label")

    # --- derived names ----------------------------------------------------------------------

    @property
    def effective_dead_letter_topic(self) -> str:
        """Where upload events go after ``dead_letter_max_attempts`` failed deliveries."""
        return self.dead_letter_topic or f"{self.name_prefix}-uploads-dead-letter"

    @property
    def effective_source_bucket(self) -> str:
        """Bucket holding the function source archives."""
        return self.source_bucket or f"{self.bucket}-sources"

    @property
    def effective_firestore_location(self) -> str:
        """Firestore database location (defaults to the region)."""
        return self.firestore_location or self.region

    @property
    def api_url(self) -> str:
        """The jobs API's stable URL (2nd gen functions keep the cloudfunctions.net address)."""
        return f"https://{self.region}-{self.project}.cloudfunctions.net/{self.name_prefix}-jobs-api"

    def service_account_id(self, key: ServiceAccountKey) -> str:
        """Account ID (the part before @) of one of the deployment's service accounts."""
        return f"{self.name_prefix}-{key}"

    def service_account_email(self, key: ServiceAccountKey) -> str:
        """E-mail of one of the deployment's service accounts."""
        return f"{self.service_account_id(key)}@{self.project}.iam.gserviceaccount.com"


def _coerce_var(source: str, name: str, kind: str, raw: Any) -> Any:
    """Check one value against the dataclass field type; lists become tuples."""
    nullable = "None" in kind
    if raw is None:
        if nullable:
            return None
        raise DeployVarsError(source, name, "null is not allowed here")
    if kind.startswith("str"):
        ok = isinstance(raw, str)
    elif kind.startswith("int"):
        ok = isinstance(raw, int) and not isinstance(raw, bool)
    elif kind.startswith("float"):
        ok = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        raw = float(raw) if ok else raw
    elif kind.startswith("bool"):
        ok = isinstance(raw, bool)
    elif kind.startswith("tuple"):
        ok = isinstance(raw, list) and all(isinstance(i, str) for i in raw)
        raw = tuple(raw) if ok else raw
    elif kind.startswith("Mapping"):
        ok = isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values())
    else:  # pragma: no cover - a new field type must be handled above
        raise AssertionError(f"unhandled variable kind {kind} for {name}")
    if not ok:
        expected = kind.replace(" | None", " or null").replace("tuple[str, ...]", "list of strings")
        raise DeployVarsError(source, name, f"expected {expected}, got {raw!r}")
    return raw


def load_vars(path: Path) -> DeploymentVars:
    """Read and check a variables file.

    Raises:
        DeployVarsError: unreadable file, syntax error, unknown/missing/invalid variable.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        hint = f" (start from the example: cp {EXAMPLE_VARS_FILE} {DEFAULT_VARS_FILE})" if not path.exists() else ""
        raise DeployVarsError(str(path), "", f"cannot read the variables file: {exc.strerror or exc}{hint}") from None
    return DeploymentVars.from_mapping(parse_tfvars(text, str(path)), str(path))


# --- the functions -----------------------------------------------------------------------------


TriggerKind = Literal["storage", "topic", "scheduler", "http"]


@dataclass(frozen=True)
class FunctionSpec:
    """One deployed function."""

    key: ServiceAccountKey
    name: str
    entry_point: str
    trigger: TriggerKind
    event_type: str | None
    retry: bool
    memory: str
    timeout_seconds: int
    max_instances: int
    ingress: str
    """ALLOW_ALL or ALLOW_INTERNAL_ONLY (Terraform spelling)."""

    @property
    def signature_type(self) -> str:
        """functions-framework signature type the entry point must be declared with."""
        return "http" if self.trigger in ("http", "scheduler") else "cloudevent"

    def to_json(self) -> dict[str, Any]:
        """Same shape as the Terraform ``local.functions`` entries."""
        data = dataclasses.asdict(self)
        data.pop("key")
        data["service_account"] = self.key
        return data


STORAGE_FINALIZED: Final = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED: Final = "google.cloud.pubsub.topic.v1.messagePublished"


def functions(plan: DeploymentVars) -> dict[str, FunctionSpec]:
    """The four functions, keyed like their service accounts."""
    p = plan.name_prefix
    return {
        "upload": FunctionSpec(
            "upload", f"{p}-upload", "on_dataset_uploaded", "storage", STORAGE_FINALIZED, True,
            "512Mi", 540, 20, "ALLOW_INTERNAL_ONLY",
        ),
        # Internal-only: Cloud Scheduler in the same project still reaches the run.app URL
        # (https://cloud.google.com/run/docs/securing/ingress, "Internal" setting).
        "poller": FunctionSpec(
            "poller", f"{p}-poller", "poll_tuning_jobs", "scheduler", None, False,
            "512Mi", 300, 1, "ALLOW_INTERNAL_ONLY",
        ),
        "completion": FunctionSpec(
            "completion", f"{p}-completion", "on_tuning_completed", "topic", PUBSUB_PUBLISHED, True,
            "1Gi", 540, 10, "ALLOW_INTERNAL_ONLY",
        ),
        "api": FunctionSpec(
            "api", f"{p}-jobs-api", "jobs_api", "http", None, False,
            "512Mi", 60, 10, "ALLOW_ALL",
        ),
    }  # fmt: skip


ENTRY_POINTS: Final = tuple(
    spec.entry_point for spec in functions(DeploymentVars(project="example", bucket="example")).values()
)
"""The entry-point names ``functions/main.py`` must define (the packager re-exports these)."""


# --- the functions' environment ------------------------------------------------------------------

SETTINGS_SOURCES: Final[dict[str, str]] = {
    "project": "var.project",
    "bucket": "var.bucket",
    "datasets_prefix": "var.datasets_prefix",
    "reports_prefix": "var.reports_prefix",
    "events_topic": "var.events_topic (as a full topic path)",
    "deployment": "var.managed_by",
    "tuning_location": "var.tuning_location (unset: Settings default)",
    "tuning_project": "unset in GCP: tuning jobs run in the deployment's project",
    "tuning_base_url": "unset in GCP: empty means the real Vertex AI",
    "firestore_database": "var.firestore_database",
    "jobs_collection": "var.jobs_collection",
    "effects_collection": "var.effects_collection",
    "spending_collection": "unset in GCP: Settings default (the spending ledgers beside the job records)",
    "pricing_file": "unset in GCP: the shipped shared/pricing.yaml (set it in a settings file to override prices)",
    "max_event_age_seconds": "var.max_event_age_seconds (unset: Settings default)",
    "lease_seconds": "var.lease_seconds (unset: Settings default)",
    "stall_after_seconds": "var.stall_after_seconds (unset: Settings default)",
    "poll_concurrency": "var.poll_concurrency (unset: Settings default)",
    "max_reported_errors": "var.max_reported_errors (unset: Settings default)",
    "defaults_file": "the packaged sftpilot-defaults.yaml (rendered from the default_* and cleanup_* variables)",
    "api_token": "unset in GCP: the static token is for the local stack only; GCP uses OIDC",
    "api_audience": "var.api_audience, else the jobs API's cloudfunctions.net URL",
    "api_cancel_principals": "var.api_cancel_principals (comma-joined)",
    "tuning_service_accounts": "var.tuning_service_accounts (comma-joined)",
    "log_level": "var.log_level (unset: Settings default)",
}
"""Where each Settings field's value comes from in GCP. A test fails when a field is missing here."""

_OPTIONAL_SETTINGS: Final = (
    "tuning_location",
    "max_event_age_seconds",
    "lease_seconds",
    "stall_after_seconds",
    "poll_concurrency",
    "max_reported_errors",
    "log_level",
)


def function_env(plan: DeploymentVars) -> dict[str, str]:
    """The environment variables every function gets (parsed by ``Settings.from_env``)."""
    env = {
        "SFTPILOT_PROJECT": plan.project,
        "SFTPILOT_BUCKET": plan.bucket,
        "SFTPILOT_DATASETS_PREFIX": plan.datasets_prefix,
        "SFTPILOT_REPORTS_PREFIX": plan.reports_prefix,
        "SFTPILOT_EVENTS_TOPIC": f"projects/{plan.project}/topics/{plan.events_topic}",
        "SFTPILOT_DEPLOYMENT": plan.managed_by,
        "SFTPILOT_FIRESTORE_DATABASE": plan.firestore_database,
        "SFTPILOT_JOBS_COLLECTION": plan.jobs_collection,
        "SFTPILOT_EFFECTS_COLLECTION": plan.effects_collection,
        "SFTPILOT_DEFAULTS_FILE": f"{FUNCTION_SOURCE_ROOT}/{DEFAULTS_FILE_NAME}",
        "SFTPILOT_API_AUDIENCE": plan.api_audience or plan.api_url,
    }
    if plan.api_cancel_principals:
        env["SFTPILOT_API_CANCEL_PRINCIPALS"] = ",".join(plan.api_cancel_principals)
    if plan.tuning_service_accounts:
        env["SFTPILOT_TUNING_SERVICE_ACCOUNTS"] = ",".join(plan.tuning_service_accounts)
    for name in _OPTIONAL_SETTINGS:
        value = getattr(plan, name)
        if value is not None:
            env[f"SFTPILOT_{name.upper()}"] = str(value)
    return dict(sorted(env.items()))


def check_settings(plan: DeploymentVars) -> Settings:
    """Build the functions' Settings from their environment, as each cold start will.

    Raises:
        DeployVarsError: naming the setting the functions would refuse to start with.
    """
    try:
        return Settings.from_env(function_env(plan))
    except SettingsError as exc:
        raise DeployVarsError("variables", exc.setting, f"the functions would refuse it: {exc}") from None


# --- the tuning defaults file ------------------------------------------------------------------


def tuning_defaults(plan: DeploymentVars) -> dict[str, Any]:
    """The deployment's tuning defaults (tuning.yaml schema), written to ``sftpilot-defaults.yaml``."""
    doc: dict[str, Any] = {"base_model": plan.default_base_model}
    optional = {
        "epochs": plan.default_epochs,
        "adapter_size": plan.default_adapter_size,
        "learning_rate_multiplier": plan.default_learning_rate_multiplier,
    }
    doc.update({k: v for k, v in optional.items() if v is not None})
    if plan.default_labels:
        doc["labels"] = dict(plan.default_labels)
    doc["smoke_test"] = {"enabled": plan.smoke_test_enabled}
    doc["cleanup"] = {
        "enabled": plan.cleanup_enabled,
        "keep_last": plan.cleanup_keep_last,
        "dry_run": plan.cleanup_dry_run,
        "on_failure": plan.cleanup_on_failure,
    }
    return doc


def tuning_defaults_yaml(plan: DeploymentVars) -> str:
    """The defaults file's text, checked against the tuning.yaml schema.

    Raises:
        DeployVarsError: when the intake would reject these defaults.
    """
    text = yaml.safe_dump(tuning_defaults(plan), sort_keys=True)
    try:
        parse_tuning_yaml(text, DEFAULTS_FILE_NAME)
    except TuningConfigError as exc:
        raise DeployVarsError("variables", "default_*", f"the tuning defaults are invalid: {exc}") from None
    return text


# --- IAM ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One role binding: ``member`` gets ``role`` on resource ``on`` (see roles.json)."""

    principal: str
    member: str
    role: str
    on: str
    condition_title: str | None = None
    condition_expression: str | None = None

    @property
    def key(self) -> str:
        """Stable identity (also the Terraform for_each key)."""
        return f"{self.principal}|{self.role}|{self.on}|{self.member}"


def roles_table() -> dict[str, Any]:
    """The parsed ``roles.json`` (principals, resources, conditions, grants with reasons)."""
    data: dict[str, Any] = json.loads(ROLES_FILE.read_text(encoding="utf-8"))
    return data


def members(plan: DeploymentVars, project_number: str) -> dict[str, list[str]]:
    """IAM members of each principal of the role table."""
    out: dict[str, list[str]] = {
        key: [f"serviceAccount:{plan.service_account_email(key)}"] for key in SERVICE_ACCOUNT_KEYS
    }
    for agent, domain in SERVICE_AGENT_DOMAINS.items():
        out[agent] = [f"serviceAccount:service-{project_number}@{domain}"]
    if not plan.grant_tuning_agent_bucket_read:
        out["tuning_agent"] = []
    out["api_invokers"] = list(plan.api_invokers)
    return out


def conditions(plan: DeploymentVars) -> dict[str, tuple[str, str]]:
    """Condition key -> (title, CEL expression)."""
    return {
        "reports_prefix": (
            "sftpilot-reports-only",
            f'resource.name.startsWith("projects/_/buckets/{plan.bucket}/objects/{plan.reports_prefix}")',
        ),
        "firestore_database": (
            "sftpilot-database-only",
            f'resource.name == "projects/{plan.project}/databases/{plan.firestore_database}"',
        ),
    }


def grants(plan: DeploymentVars, project_number: str) -> list[Grant]:
    """Every role binding of the deployment, expanded from roles.json (order: the table's)."""
    who = members(plan, project_number)
    cond = conditions(plan)
    out: list[Grant] = []
    for row in roles_table()["grants"]:
        title, expression = cond[row["condition"]] if row["condition"] else (None, None)
        # "tuning_service_accounts" is one grant per listed account: on "service_account:EMAIL".
        targets = (
            [f"service_account:{sa}" for sa in plan.tuning_service_accounts]
            if row["on"] == "tuning_service_accounts"
            else [row["on"]]
        )
        for on in targets:
            for member in who[row["principal"]]:
                out.append(Grant(row["principal"], member, row["role"], on, title, expression))
    return out


# --- Firestore ---------------------------------------------------------------------------------


def composite_indexes() -> list[list[tuple[str, str]]]:
    """The declared composite indexes of the jobs collection (``firestore_indexes.json``)."""
    data = json.loads(INDEXES_FILE.read_text(encoding="utf-8"))
    return [[(str(f), str(o)) for f, o in index] for index in data["indexes"]]


def index_key(index: Sequence[tuple[str, str]]) -> str:
    """Stable name of an index, e.g. ``status_asc__created_at_desc`` (the Terraform key)."""
    return "__".join(f"{f}_{'asc' if o == 'ASCENDING' else 'desc'}" for f, o in index)


# --- the plan as JSON and as shell variables ----------------------------------------------------


def plan_json(plan: DeploymentVars, project_number: str) -> dict[str, Any]:
    """Everything derived, in the same shape ``terraform console`` prints for ``local.plan``."""
    return {
        "apis": sorted(APIS),
        "function_env": function_env(plan),
        "tuning_defaults": tuning_defaults(plan),
        "functions": {k: v.to_json() for k, v in functions(plan).items()},
        "service_accounts": {k: plan.service_account_id(k) for k in SERVICE_ACCOUNT_KEYS},
        "grants": {
            g.key: {
                "principal": g.principal,
                "member": g.member,
                "role": g.role,
                "on": g.on,
                "condition": None
                if g.condition_title is None
                else {"title": g.condition_title, "expression": g.condition_expression},
            }
            for g in grants(plan, project_number)
        },
        "job_indexes": {index_key(ix): [{"field_path": f, "order": o} for f, o in ix] for ix in composite_indexes()},
        "names": {
            "dead_letter_topic": plan.effective_dead_letter_topic,
            "dead_letter_hold_subscription": f"{plan.effective_dead_letter_topic}-hold",
            "source_bucket": plan.effective_source_bucket,
            "firestore_location": plan.effective_firestore_location,
            "scheduler_job": f"{plan.name_prefix}-poll",
            "api_url": plan.api_url,
        },
        "constants": {
            "runtime": RUNTIME,
            "defaults_file": f"{FUNCTION_SOURCE_ROOT}/{DEFAULTS_FILE_NAME}",
            "dead_letter_hold_retention": DEAD_LETTER_HOLD_RETENTION,
            "scheduler_attempt_deadline": SCHEDULER_ATTEMPT_DEADLINE,
        },
    }


def shell_assignments(plan: DeploymentVars, project_number: str) -> str:
    """Bash assignments (scalars and parallel arrays) that deploy.sh evaluates."""
    lines: list[str] = []

    def scalar(name: str, value: object) -> None:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        lines.append(f"{name}={shlex.quote(text)}")

    def array(name: str, values: Sequence[object]) -> None:
        lines.append(f"{name}=(" + " ".join(shlex.quote(str(v)) for v in values) + ")")

    derived = plan_json(plan, project_number)
    for f in fields(plan):
        value = getattr(plan, f.name)
        if isinstance(value, (str, int, float, bool)):
            scalar(f"VAR_{f.name.upper()}", value)
    for name, value in derived["names"].items():
        scalar(name.upper(), value)
    scalar("RUNTIME", RUNTIME)
    scalar("PROJECT_NUMBER", project_number)
    scalar("DEAD_LETTER_HOLD_RETENTION", DEAD_LETTER_HOLD_RETENTION)
    scalar("SCHEDULER_ATTEMPT_DEADLINE", SCHEDULER_ATTEMPT_DEADLINE)
    array("APIS", sorted(APIS))
    array("SERVICE_ACCOUNT_KEYS", SERVICE_ACCOUNT_KEYS)
    for key in SERVICE_ACCOUNT_KEYS:
        scalar(f"SA_{key.upper()}_ID", plan.service_account_id(key))
        scalar(f"SA_{key.upper()}_EMAIL", plan.service_account_email(key))
    specs = functions(plan)
    array("FUNCTION_KEYS", list(specs))
    for spec in specs.values():
        key = spec.key
        for attr in ("name", "entry_point", "trigger", "event_type", "retry", "memory", "timeout_seconds"):
            value = getattr(spec, attr)
            scalar(f"FN_{key.upper()}_{attr.upper()}", "" if value is None else value)
        scalar(f"FN_{key.upper()}_MAX_INSTANCES", spec.max_instances)
        scalar(f"FN_{key.upper()}_INGRESS", "internal-only" if spec.ingress == "ALLOW_INTERNAL_ONLY" else "all")
    all_grants = grants(plan, project_number)
    array("GRANT_PRINCIPALS", [g.principal for g in all_grants])
    array("GRANT_MEMBERS", [g.member for g in all_grants])
    array("GRANT_ROLES", [g.role for g in all_grants])
    array("GRANT_ON", [g.on for g in all_grants])
    array("GRANT_CONDITIONS", [_gcloud_condition(g) for g in all_grants])
    array(
        "INDEX_FIELD_CONFIGS",
        [" ".join(f"--field-config=field-path={f},order={o.lower()}" for f, o in ix) for ix in composite_indexes()],
    )
    return "\n".join(lines) + "\n"


def _gcloud_condition(grant: Grant) -> str:
    """The ``--condition`` value gcloud takes (``None`` = explicitly unconditional)."""
    if grant.condition_expression is None:
        return "None"
    if "," in grant.condition_expression:  # gcloud splits KEY=VALUE pairs on commas
        raise DeployVarsError("variables", "", f"condition {grant.condition_expression!r} contains a comma")
    return f"expression={grant.condition_expression},title={grant.condition_title}"


def env_vars_yaml(plan: DeploymentVars) -> str:
    """The functions' environment as the YAML file ``gcloud functions deploy --env-vars-file`` reads."""
    return yaml.safe_dump(function_env(plan), sort_keys=True, default_style='"')


# --- command line (used by deploy.sh) -----------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deploy.gcp.config {check,shell,env-file,defaults-file,plan-json} --vars FILE``."""
    parser = argparse.ArgumentParser(prog="python -m deploy.gcp.config", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["check", "shell", "env-file", "defaults-file", "plan-json"])
    parser.add_argument("--vars", type=Path, default=DEFAULT_VARS_FILE, help="the variables file")
    parser.add_argument("--project-number", default=PLACEHOLDER_PROJECT_NUMBER)
    parser.add_argument("--out", type=Path, help="output file (env-file, defaults-file)")
    args = parser.parse_args(argv)
    try:
        plan = load_vars(args.vars)
        check_settings(plan)
        defaults_text = tuning_defaults_yaml(plan)
        if args.command == "shell":
            sys.stdout.write(shell_assignments(plan, args.project_number))
        elif args.command == "plan-json":
            sys.stdout.write(json.dumps(plan_json(plan, args.project_number), indent=2, sort_keys=True) + "\n")
        elif args.command in ("env-file", "defaults-file"):
            text = env_vars_yaml(plan) if args.command == "env-file" else defaults_text
            if args.out is None:
                sys.stdout.write(text)
            else:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(text, encoding="utf-8")
        else:
            print(f"{args.vars}: OK ({plan.project}, {plan.region}, bucket {plan.bucket})")
    except DeployVarsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
