"""The deployment's settings: one typed object, built in one place, validated at start-up.

Sources, later wins: built-in defaults < the YAML file named by ``SFTPILOT_SETTINGS_FILE``
(keys are the lower-case field names below) < environment variables (``SFTPILOT_<FIELD>``,
plus ``GOOGLE_CLOUD_PROJECT`` for the project). This is the only module that reads the
environment; everything else receives a :class:`Settings` or plain values.

Example:
    >>> s = Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p", "SFTPILOT_BUCKET": "datasets-bkt"})
    >>> s.events_topic_path
    'projects/p/topics/sftpilot-events'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from shared.claims import DEFAULT_LEASE_SECONDS
from shared.errors import SettingsError
from shared.labels import is_label_value

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


@dataclass(frozen=True)
class Settings:
    """Everything a deployment is configured with. See the README's settings table."""

    project: str
    """GCP project (``GOOGLE_CLOUD_PROJECT`` or ``SFTPILOT_PROJECT``)."""
    bucket: str
    """The datasets bucket (``SFTPILOT_BUCKET``)."""
    datasets_prefix: str = "datasets/"
    reports_prefix: str = "reports/"
    events_topic: str = "sftpilot-events"
    """Topic name or full ``projects/P/topics/T`` path."""
    deployment: str = "sftpilot"
    """Value of the ``managed-by`` label: only models carrying it are ever deleted."""
    tuning_location: str = "us-central1"
    tuning_project: str = ""
    """Defaults to ``project``."""
    tuning_base_url: str = ""
    """Empty = real Vertex AI; set to the local tuning server's URL for the local stack."""
    firestore_database: str = "(default)"
    jobs_collection: str = "jobs"
    effects_collection: str = "effects"
    spending_collection: str = "spending"
    """Collection of the per-lineage, per-month spending ledgers (budget.monthly_lineage_usd)."""
    pricing_file: str = ""
    """Optional YAML replacing prices of shared/pricing.yaml model by model (USD per 1M training tokens)."""
    max_event_age_seconds: int = 86_400
    """Upload events older than this are recorded as DROPPED instead of retried forever."""
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    """In-progress claims older than this are taken over (longer than the 540 s function timeout)."""
    stall_after_seconds: int = 6 * 3600
    """A job PENDING longer than this (and not only waiting for quota) produces one ``job.stalled`` event."""
    poll_concurrency: int = 16
    max_reported_errors: int = 100
    defaults_file: str = ""
    """Optional YAML with deployment-wide tuning defaults (same keys as tuning.yaml)."""
    api_token: str = ""
    """Static bearer token accepted by the jobs API (local stack); empty = OIDC only."""
    api_audience: str = ""
    """Accepted audiences of OIDC tokens on the jobs API, comma-separated (its URL in GCP)."""
    api_cancel_principals: tuple[str, ...] = field(default_factory=tuple)
    """E-mails allowed to cancel jobs through the API; empty = nobody via OIDC."""
    tuning_service_accounts: tuple[str, ...] = field(default_factory=tuple)
    """Service accounts a tuning.yaml may name as ``service_account`` (comma-separated); the
    deployment grants the job-creating functions actAs on exactly these. Empty = none allowed."""
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        self._check()

    # --- derived ------------------------------------------------------------------------------

    @property
    def events_topic_path(self) -> str:
        """Full topic path ``projects/P/topics/T``."""
        if self.events_topic.startswith("projects/"):
            return self.events_topic
        return f"projects/{self.project}/topics/{self.events_topic}"

    @property
    def effective_tuning_project(self) -> str:
        """Project that owns the tuning jobs."""
        return self.tuning_project or self.project

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build from (a copy of) the environment; raises SettingsError naming the bad setting."""
        source = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        settings_file = source.get("SFTPILOT_SETTINGS_FILE", "")
        if settings_file:
            values.update(_read_settings_file(settings_file))
        project = source.get("SFTPILOT_PROJECT") or source.get("GOOGLE_CLOUD_PROJECT")
        if project:
            values["project"] = project
        for f in fields(cls):
            env_name = f"SFTPILOT_{f.name.upper()}"
            if env_name in source and f.name != "project":
                values[f.name] = source[env_name]
        for required, env_name in (("project", "GOOGLE_CLOUD_PROJECT"), ("bucket", "SFTPILOT_BUCKET")):
            if not values.get(required):
                raise SettingsError(env_name, None, "a non-empty value (required)")
        return cls(**_coerce(values))

    def _check(self) -> None:
        if not _BUCKET.match(self.bucket):
            raise SettingsError("SFTPILOT_BUCKET", self.bucket, "a GCS bucket name (3-222 chars, a-z0-9._-)")
        if not is_label_value(self.deployment, allow_empty=False):
            raise SettingsError(
                "SFTPILOT_DEPLOYMENT", self.deployment, "a label value: 1-63 chars of a-z, 0-9, _ and -"
            )
        for name in ("datasets_prefix", "reports_prefix"):
            value = getattr(self, name)
            if not value.endswith("/") or value.startswith("/"):
                raise SettingsError(f"SFTPILOT_{name.upper()}", value, "a folder like 'datasets/' (ends with /)")
        if self.datasets_prefix.startswith(self.reports_prefix) or self.reports_prefix.startswith(self.datasets_prefix):
            raise SettingsError(
                "SFTPILOT_REPORTS_PREFIX",
                self.reports_prefix,
                f"a prefix disjoint from SFTPILOT_DATASETS_PREFIX={self.datasets_prefix!r} "
                "(reports must never trigger intake)",
            )
        for name in ("max_event_age_seconds", "lease_seconds", "stall_after_seconds", "poll_concurrency"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"SFTPILOT_{name.upper()}", getattr(self, name), "a positive integer")
        if self.tuning_base_url and not self.tuning_base_url.startswith(("http://", "https://")):
            raise SettingsError("SFTPILOT_TUNING_BASE_URL", self.tuning_base_url, "an http(s):// URL")
        if self.pricing_file:
            from shared.pricing import load_price_table  # noqa: PLC0415 - only when a file is set

            load_price_table(self.pricing_file)  # raises SettingsError naming SFTPILOT_PRICING_FILE
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError("SFTPILOT_LOG_LEVEL", self.log_level, "one of DEBUG, INFO, WARNING, ERROR")


def _read_settings_file(path: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SettingsError("SFTPILOT_SETTINGS_FILE", path, "an existing YAML file") from None
    except yaml.YAMLError as exc:
        raise SettingsError("SFTPILOT_SETTINGS_FILE", path, f"valid YAML ({exc})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError("SFTPILOT_SETTINGS_FILE", path, "a YAML mapping of setting: value")
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(loaded) - known)
    if unknown:
        raise SettingsError("SFTPILOT_SETTINGS_FILE", unknown, f"only known settings: {sorted(known)}")
    return {str(k): v for k, v in loaded.items()}


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    """Turn env strings into the field types, naming the setting on failure."""
    out: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(Settings)}
    for name, raw in values.items():
        kind = types[name]
        env_name = f"SFTPILOT_{name.upper()}"
        if kind == "int":
            try:
                out[name] = int(raw)
            except (TypeError, ValueError):
                raise SettingsError(env_name, raw, "an integer") from None
        elif kind == "tuple[str, ...]":
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            out[name] = tuple(str(i).strip() for i in items if str(i).strip())
        else:
            out[name] = str(raw)
    return out


@dataclass(frozen=True)
class ClientSettings:
    """What the operator CLI needs to reach a deployment (GCP or the local stack).

    ``sftpilot local env`` prints exactly these variables for the local stack; in GCP set
    ``SFTPILOT_API_URL`` to the jobs_api URL and leave the token empty to use
    ``gcloud auth print-identity-token``.
    """

    api_url: str = ""
    api_token: str = ""
    project: str = ""
    bucket: str = ""
    datasets_prefix: str = "datasets/"
    events_topic: str = ""
    """Full topic path or name of the sftpilot events topic."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        """Read the client variables; nothing is required until a command needs it."""
        source = dict(os.environ if env is None else env)
        return cls(
            api_url=source.get("SFTPILOT_API_URL", "").rstrip("/"),
            api_token=source.get("SFTPILOT_API_TOKEN", ""),
            project=source.get("SFTPILOT_PROJECT") or source.get("GOOGLE_CLOUD_PROJECT", ""),
            bucket=source.get("SFTPILOT_BUCKET", ""),
            datasets_prefix=source.get("SFTPILOT_DATASETS_PREFIX", "datasets/"),
            events_topic=source.get("SFTPILOT_EVENTS_TOPIC", ""),
        )

    def require(self, name: str) -> str:
        """The value of a setting a command needs, or SettingsError naming its variable."""
        value = str(getattr(self, name))
        if not value:
            env = {"project": "GOOGLE_CLOUD_PROJECT"}.get(name, f"SFTPILOT_{name.upper()}")
            raise SettingsError(env, None, "a value (run `eval $(sftpilot local env)` for the local stack)")
        return value

    @property
    def events_topic_path(self) -> str:
        """Full topic path."""
        topic = self.require("events_topic")
        return topic if topic.startswith("projects/") else f"projects/{self.require('project')}/topics/{topic}"
