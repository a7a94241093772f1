"""tuning.yaml: parse, merge and validate a dataset's tuning configuration.

Resolution (later wins): built-in defaults < deployment defaults (``Settings.defaults_file``,
same schema) < every ``tuning.yaml`` from the datasets prefix root down to the dataset's own
folder. Mappings (``labels``, ``smoke_test``, ``cleanup``) merge key by key; lists and scalars
replace; an explicit ``null`` resets a key to its built-in default.

Every layer is checked on its own, so each problem names the file it is in and its dotted path
(``smoke_test.prompts[1].regex``). Unknown keys are errors (a typo must not be ignored silently).
All problems of all files are reported at once in one :class:`~shared.errors.TuningConfigError`.

Example:
    >>> cfg = load_tuning_yaml("epochs: 3\\nlabels: {team: ml}\\n", "tuning.yaml")
    >>> (cfg.base_model, cfg.epochs, cfg.labels, cfg.cleanup.keep_last)
    ('gemini-2.5-flash', 3, {'team': 'ml'}, 1)
    >>> load_tuning_yaml("epochs: lots\\n", "tuning.yaml")
    Traceback (most recent call last):
    ...
    shared.errors.TuningConfigError: tuning.yaml: epochs: must be an integer from 1 to 100 (got 'lots')
"""

from __future__ import annotations

import re
import reprlib
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import yaml

from shared.budget import BudgetOptions, check_budget_section
from shared.errors import BlobReadError, ConfigProblem, TuningConfigError
from shared.gate import GateOptions, check_gate_section
from shared.labels import LABEL_KEY_RE, LABEL_VALUE_RE, LINEAGE_RE
from shared.ports import BlobStore
from shared.records import JSON
from shared.retry import RetryPolicy

CONFIG_FILE_NAME: Final = "tuning.yaml"
MAX_CONFIG_BYTES: Final = 64 * 1024
"""A tuning.yaml larger than this is rejected (it is configuration, not data)."""

DEFAULT_BASE_MODEL: Final = "gemini-2.5-flash"
DEFAULT_DISPLAY_NAME: Final = "{lineage}-{name}-{generation}"
DISPLAY_NAME_FIELDS: Final = frozenset({"lineage", "name", "generation", "date"})
MAX_DISPLAY_NAME_CHARS: Final = 128
ADAPTER_SIZES: Final = (1, 2, 4, 8, 16)
RESERVED_LABELS: Final = frozenset({"sftpilot-key", "sftpilot-lineage", "managed-by"})
MAX_LABELS_PER_RESOURCE: Final = 64
"""Labels one Google Cloud resource may carry (tuning jobs, models and endpoints alike):
https://cloud.google.com/resource-manager/docs/labels-overview#requirements and the TuningJob
``labels`` field, https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs#TuningJob"""
GOOGLE_LABEL_HEADROOM: Final = 8
"""Labels left free for the ones Google adds itself (Vertex propagates labels onto resources it
creates, e.g. https://cloud.google.com/vertex-ai/docs/pipelines/gcpc-label-propagation): a job
whose labels fill all 64 could be refused, or lose a label, when Google adds one."""
MAX_USER_LABELS: Final = MAX_LABELS_PER_RESOURCE - len(RESERVED_LABELS) - GOOGLE_LABEL_HEADROOM
"""53: 64 per resource, minus sftpilot's 3 reserved labels, minus 8 kept free for Google's own."""


def too_many_labels(count: int) -> str:
    """The message for ``count`` user labels over :data:`MAX_USER_LABELS`, with the arithmetic.

    >>> too_many_labels(60)
    'at most 53 labels (got 60): Vertex allows 64 per resource, sftpilot sets 3 and keeps 8 free for labels Google adds'
    """
    return (
        f"at most {MAX_USER_LABELS} labels (got {count}): Vertex allows {MAX_LABELS_PER_RESOURCE} per resource, "
        f"sftpilot sets {len(RESERVED_LABELS)} and keeps {GOOGLE_LABEL_HEADROOM} free for labels Google adds"
    )


MAX_SMOKE_PROMPTS: Final = 50

COMPLETION_FUNCTION_TIMEOUT_SECONDS: Final = 540
"""The longest an event-driven function may run (the completion function is deployed with it):
https://cloud.google.com/functions/docs/configuring/timeout . Past it the invocation is killed
and the event redelivered."""
COMPLETION_RESERVE_SECONDS: Final = 60
"""Kept for everything but the prompts: claim, reports, record update, publish, cleanup."""
SMOKE_TEST_TIME_BUDGET_SECONDS: Final = COMPLETION_FUNCTION_TIMEOUT_SECONDS - COMPLETION_RESERVE_SECONDS
"""480 s: what one invocation may spend on smoke-test calls."""
SMOKE_CALL_RETRY: Final = RetryPolicy()
"""Attempts and backoff of one smoke-test call (the completion function's default policy)."""

_BASE_MODEL_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@/-]{0,199}$")
_KMS_RE: Final = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
_EMAIL_RE: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")


# --- the resolved configuration -----------------------------------------------------------------


@dataclass(frozen=True)
class SmokePrompt:
    """One smoke-test prompt and the checks its answer must pass."""

    prompt: str
    contains: tuple[str, ...] = ()
    """Every string must occur in the answer."""
    regex: str | None = None
    """The answer must match (``re.search``)."""
    max_chars: int | None = None
    reference: str | None = None
    """Expected answer, for ROUGE scoring when ``compare_base`` is on."""

    def to_dict(self) -> JSON:
        """JSON-ready view (``contains`` is always a list)."""
        return {
            "prompt": self.prompt,
            "contains": list(self.contains),
            "regex": self.regex,
            "max_chars": self.max_chars,
            "reference": self.reference,
        }


@dataclass(frozen=True)
class SmokeTestConfig:
    """How the tuned endpoint is smoke-tested after a successful job."""

    enabled: bool = True
    prompts: tuple[SmokePrompt, ...] = ()
    from_validation: int = 5
    """When no prompts are given: the first N examples of the validation set (reference = answer)."""
    default_prompt: str = "Say hello."
    """When neither prompts nor a validation set exist."""
    checkpoints: bool = False
    compare_base: bool = False
    max_output_tokens: int = 256
    timeout_seconds: int = 30
    """Per call; the default keeps 5 prompts x 3 attempts inside the time budget (465 of 480 s)."""

    def to_dict(self) -> JSON:
        """JSON-ready view."""
        return {
            "enabled": self.enabled,
            "prompts": [p.to_dict() for p in self.prompts],
            "from_validation": self.from_validation,
            "default_prompt": self.default_prompt,
            "checkpoints": self.checkpoints,
            "compare_base": self.compare_base,
            "max_output_tokens": self.max_output_tokens,
            "timeout_seconds": self.timeout_seconds,
        }


@dataclass(frozen=True)
class CleanupConfig:
    """Retiring the models a new passing model supersedes."""

    enabled: bool = False
    keep_last: int = 1
    """Newest passing models of the lineage to keep, the new one included."""
    dry_run: bool = False
    on_failure: bool = False

    def to_dict(self) -> JSON:
        """JSON-ready view."""
        return {
            "enabled": self.enabled,
            "keep_last": self.keep_last,
            "dry_run": self.dry_run,
            "on_failure": self.on_failure,
        }


@dataclass(frozen=True)
class TuningConfig:
    """The resolved tuning configuration of one dataset (every default filled in).

    Stored on the job record as :meth:`to_dict`; :meth:`from_dict` reads it back (and validates).
    """

    lineage: str | None = None
    """Overrides the lineage folder; the intake stores the effective lineage here."""
    base_model: str = DEFAULT_BASE_MODEL
    base_checkpoint_id: str | None = None
    """Continuous tuning: the parent model's checkpoint to start from (default: its default one)."""
    epochs: int | None = None
    """None: the service chooses."""
    adapter_size: int | None = None
    learning_rate_multiplier: float | None = None
    display_name: str = DEFAULT_DISPLAY_NAME
    """Template with ``{lineage} {name} {generation} {date}``; see :func:`render_display_name`."""
    description: str = ""
    export_last_checkpoint_only: bool = False
    validation_dataset: str | None = None
    """A file name in the dataset's folder; None = ``<name>.validation.jsonl`` if present."""
    labels: dict[str, str] = field(default_factory=dict)
    """User labels; ours (``sftpilot-key``, ``sftpilot-lineage``, ``managed-by``) are added on top."""
    kms_key_name: str | None = None
    service_account: str | None = None
    smoke_test: SmokeTestConfig = field(default_factory=SmokeTestConfig)
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)
    gate: GateOptions = field(default_factory=GateOptions)
    """The quality gate (:mod:`shared.gate`)."""
    budget: BudgetOptions = field(default_factory=BudgetOptions)
    """Cost limits checked before submission (:mod:`shared.budget`)."""

    def to_dict(self) -> JSON:
        """JSON-ready view with every key present (the ``record.config`` form)."""
        return {
            "lineage": self.lineage,
            "base_model": self.base_model,
            "base_checkpoint_id": self.base_checkpoint_id,
            "epochs": self.epochs,
            "adapter_size": self.adapter_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
            "display_name": self.display_name,
            "description": self.description,
            "export_last_checkpoint_only": self.export_last_checkpoint_only,
            "validation_dataset": self.validation_dataset,
            "labels": dict(self.labels),
            "kms_key_name": self.kms_key_name,
            "service_account": self.service_account,
            "smoke_test": self.smoke_test.to_dict(),
            "cleanup": self.cleanup.to_dict(),
            "gate": self.gate.to_dict(),
            "budget": self.budget.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TuningConfig:
        """Validate and build from a dict (the tuning.yaml schema; :meth:`to_dict` round-trips).

        Raises:
            TuningConfigError: listing every problem with its dotted path.
        """
        layer = _check_layer(data, source)
        if layer.problems:
            raise TuningConfigError(source, layer.problems)
        return _build(layer.values, [source])


# --- public entry points -----------------------------------------------------------------------


def parse_tuning_yaml(text: str | bytes, source: str) -> JSON:
    """Parse one tuning.yaml into its checked (partial) mapping of keys that it sets.

    Raises:
        TuningConfigError: YAML syntax errors, duplicate keys, unknown keys, wrong types or ranges.
    """
    raw = _load_yaml(text, source)
    layer = _check_layer(raw, source)
    if layer.problems:
        raise TuningConfigError(source, layer.problems)
    return layer.values


def load_tuning_yaml(text: str | bytes, source: str = CONFIG_FILE_NAME) -> TuningConfig:
    """One tuning.yaml on its own over the built-in defaults (the CLI's ``validate --config``)."""
    return _build(parse_tuning_yaml(text, source), [source])


def load_defaults(path: str, blobs: BlobStore | None = None) -> JSON:
    """Read the deployment defaults file (a local path or ``gs://bucket/name``), checked.

    Raises:
        TuningConfigError: the file is missing, too large or invalid (source = ``path``).
    """
    data: bytes | None
    if path.startswith("gs://"):
        if blobs is None:
            raise TuningConfigError(path, [ConfigProblem("", "a gs:// defaults file needs a blob store", path)])
        bucket, _, name = path[len("gs://") :].partition("/")
        data = _read_config_blob(blobs, bucket, name)
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise TuningConfigError(path, [ConfigProblem("", f"cannot read the file: {reason}", path)]) from None
        if len(data) > MAX_CONFIG_BYTES:
            raise TuningConfigError(
                path, [ConfigProblem("", f"larger than {MAX_CONFIG_BYTES} bytes ({len(data)})", path)]
            )
    if data is None:
        raise TuningConfigError(path, [ConfigProblem("", "the defaults file does not exist", path)])
    return parse_tuning_yaml(data, path)


def config_folders(dataset_name: str, datasets_prefix: str) -> list[str]:
    """The folders whose tuning.yaml apply to a dataset, root first.

    >>> config_folders("datasets/faq/2026/v1.jsonl", "datasets/")
    ['datasets/', 'datasets/faq/', 'datasets/faq/2026/']
    """
    if not dataset_name.startswith(datasets_prefix):
        raise ValueError(f"{dataset_name!r} is not under {datasets_prefix!r}")
    folders = [datasets_prefix]
    parts = dataset_name[len(datasets_prefix) :].split("/")[:-1]
    current = datasets_prefix
    for part in parts:
        current = f"{current}{part}/"
        folders.append(current)
    return folders


def resolve_config(
    blobs: BlobStore,
    bucket: str,
    dataset_name: str,
    datasets_prefix: str,
    defaults: TuningConfig | Mapping[str, Any] | None = None,
) -> TuningConfig:
    """Merge defaults and every tuning.yaml from the prefix root down to the dataset's folder.

    ``defaults`` is the deployment's defaults layer (a :class:`TuningConfig`, or a raw mapping
    in the tuning.yaml schema that is checked here with source ``deployment defaults``).

    Raises:
        TuningConfigError: every problem of every file (each :class:`ConfigProblem` names its file).
        BlobReadError: a transient read failure (retryable).
    """
    layers: list[_Layer] = []
    if isinstance(defaults, TuningConfig):
        layers.append(_Layer("deployment defaults", _strip_nones(defaults.to_dict()), []))
    elif defaults is not None:
        layers.append(_check_layer(defaults, "deployment defaults"))
    for folder in config_folders(dataset_name, datasets_prefix):
        name = folder + CONFIG_FILE_NAME
        source = f"gs://{bucket}/{name}"
        try:
            data = _read_config_blob(blobs, bucket, name)
        except TuningConfigError as exc:
            layers.append(_Layer(source, {}, list(exc.problems)))
            continue
        if data is None:
            continue
        try:
            raw = _load_yaml(data, source)
        except TuningConfigError as exc:
            layers.append(_Layer(source, {}, list(exc.problems)))
            continue
        layers.append(_check_layer(raw, source))
    problems = [p for layer in layers for p in layer.problems]
    if problems:
        sources = list(dict.fromkeys(p.source for p in problems))
        raise TuningConfigError(", ".join(sources), problems)
    merged: JSON = {}
    for layer in layers:
        merged = _merge(merged, layer.values)
    return _build(merged, [layer.source for layer in layers] or ["built-in defaults"])


def check_service_account(config: TuningConfig, allowed: Sequence[str]) -> None:
    """Refuse a ``service_account`` outside the deployment's allow-list, before submission.

    Creating a job that runs as a custom service account needs ``iam.serviceAccounts.actAs`` on
    it (TuningJob.serviceAccount, https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs),
    and the deployment grants that only for ``SFTPILOT_TUNING_SERVICE_ACCOUNTS``: any other
    account would fail at Vertex with a permission error.

    Raises:
        TuningConfigError: with path ``service_account`` and the reason.
    """
    account = config.service_account
    if account is None or account.lower() in {a.lower() for a in allowed}:
        return
    listed = ", ".join(allowed) if allowed else "none"
    problem = ConfigProblem(
        "service_account",
        f"{account!r} is not one of this deployment's tuning service accounts ({listed}); the functions "
        "may only act as those (add it to tuning_service_accounts in the deployment variables, "
        "SFTPILOT_TUNING_SERVICE_ACCOUNTS)",
        "resolved config",
    )
    raise TuningConfigError("resolved config", [problem])


def render_display_name(config: TuningConfig, *, lineage: str, name: str, generation: int, when: datetime) -> str:
    """Fill the ``display_name`` template; the result must be 1-128 characters.

    ``when`` should be a stable time (the upload event time), so every retry renders the same name.

    >>> from datetime import UTC
    >>> render_display_name(TuningConfig(), lineage="faq", name="v1", generation=7,
    ...                     when=datetime(2026, 1, 2, tzinfo=UTC))
    'faq-v1-7'

    Raises:
        TuningConfigError: the rendered name is empty or longer than 128 characters.
    """
    rendered = config.display_name.format(
        lineage=lineage, name=name, generation=generation, date=when.strftime("%Y-%m-%d")
    ).strip()
    if not rendered or len(rendered) > MAX_DISPLAY_NAME_CHARS:
        problem = ConfigProblem(
            "display_name",
            f"the template {config.display_name!r} renders to {len(rendered)} characters "
            f"({rendered[:40]!r}...); Vertex accepts 1 to {MAX_DISPLAY_NAME_CHARS}: "
            "set a shorter display_name template in tuning.yaml",
            "resolved config",
        )
        raise TuningConfigError("resolved config", [problem])
    return rendered


# --- YAML loading ------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
        except TypeError:
            duplicate = False
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        if not isinstance(key, list | dict):
            seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str | bytes, source: str) -> Any:
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except UnicodeDecodeError as exc:
        raise TuningConfigError(source, [ConfigProblem("", f"not UTF-8 text (byte {exc.start})", source)]) from None
    except RecursionError:
        too_deep = ConfigProblem("", "nested too deeply to be a tuning config", source)
        raise TuningConfigError(source, [too_deep]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TuningConfigError(source, [ConfigProblem("", f"not valid YAML: {problem}{where}", source)]) from None


def _read_config_blob(blobs: BlobStore, bucket: str, name: str) -> bytes | None:
    """A config object's bytes, None if absent; oversize is a config problem, not a read failure."""
    try:
        return blobs.read_bytes(bucket, name, max_bytes=MAX_CONFIG_BYTES)
    except BlobReadError:
        info = blobs.stat(bucket, name)
        if info is not None and info.size > MAX_CONFIG_BYTES:
            source = f"gs://{bucket}/{name}"
            raise TuningConfigError(
                source, [ConfigProblem("", f"larger than {MAX_CONFIG_BYTES} bytes ({info.size})", source)]
            ) from None
        raise


# --- checking one layer ------------------------------------------------------------------------


@dataclass
class _Layer:
    source: str
    values: JSON
    problems: list[ConfigProblem]


class _Checker:
    """Collects problems of one source; each ``want_*`` returns the cleaned value or None."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[ConfigProblem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(path, message, self.source))

    def want_bool(self, value: Any, path: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.fail(path, f"must be true or false (got {_show(value)})")
        return None

    def want_int(self, value: Any, path: str, low: int, high: int) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        self.fail(path, f"must be an integer from {low} to {high} (got {_show(value)})")
        return None

    def want_str(self, value: Any, path: str, *, allow_empty: bool = False) -> str | None:
        if isinstance(value, str) and (allow_empty or value.strip()):
            return value
        expected = "a string" if allow_empty else "a non-empty string"
        self.fail(path, f"must be {expected} (got {_show(value)})")
        return None

    def want_match(self, value: Any, path: str, pattern: re.Pattern[str], expected: str) -> str | None:
        text = self.want_str(value, path)
        if text is None:
            return None
        if pattern.match(text):
            return text
        self.fail(path, f"must be {expected} (got {text!r})")
        return None

    def want_mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        if isinstance(value, Mapping):
            bad = [k for k in value if not isinstance(k, str)]
            for key in bad:
                self.fail(_join(path, str(key)), f"keys must be strings (got {_show(key)})")
            return {k: v for k, v in value.items() if isinstance(k, str)}
        self.fail(path or "(top level)", f"must be a mapping of key: value (got {_show(value)})")
        return None

    def check_keys(self, mapping: Mapping[str, Any], path: str, known: Mapping[str, object]) -> None:
        for key in mapping:
            if key not in known:
                self.fail(_join(path, key), f"unknown key; known keys: {', '.join(sorted(known))}")


def _short_repr() -> reprlib.Repr:
    bounded = reprlib.Repr()  # Python 3.11's Repr takes no keyword arguments
    bounded.maxlevel, bounded.maxlist, bounded.maxdict, bounded.maxstring, bounded.maxother = 3, 4, 4, 50, 50
    return bounded


_SHORT_REPR = _short_repr()


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean; quote it if you meant text)"
    if value is None:
        return "null"
    # reprlib bounds the work too: a YAML alias bomb is tiny on disk but huge once repr()'d.
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


FieldCheck = Callable[[_Checker, Any, str], Any]


def _check_lineage(c: _Checker, v: Any, p: str) -> Any:
    return c.want_match(v, p, LINEAGE_RE, "1-63 lowercase letters, digits, '-' or '_' (it becomes a label)")


def _check_base_model(c: _Checker, v: Any, p: str) -> Any:
    if v == "lineage:live":  # continuous tuning on the lineage's live model (shared/continuous.py)
        return v
    return c.want_match(
        v, p, _BASE_MODEL_RE, "a model name such as 'gemini-2.5-flash', a tuned model's resource name or lineage:live"
    )


def _check_epochs(c: _Checker, v: Any, p: str) -> Any:
    return c.want_int(v, p, 1, 100)


def _check_adapter_size(c: _Checker, v: Any, p: str) -> Any:
    if isinstance(v, int) and not isinstance(v, bool) and v in ADAPTER_SIZES:
        return v
    c.fail(p, f"must be one of {', '.join(map(str, ADAPTER_SIZES))} (got {_show(v)})")
    return None


def _check_lr(c: _Checker, v: Any, p: str) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 10:
        return float(v)
    c.fail(p, f"must be a number greater than 0 and at most 10 (got {_show(v)})")
    return None


def _check_display_name(c: _Checker, v: Any, p: str) -> Any:
    template = c.want_str(v, p)
    if template is None:
        return None
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        c.fail(p, f"is not a valid template ({exc}); use {{lineage}} {{name}} {{generation}} {{date}}")
        return None
    ok = True
    for _, field_name, format_spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name not in DISPLAY_NAME_FIELDS or format_spec or conversion:
            c.fail(
                p,
                f"unknown placeholder {{{field_name}}}; allowed: "
                + ", ".join(f"{{{f}}}" for f in sorted(DISPLAY_NAME_FIELDS)),
            )
            ok = False
    if len(template) > MAX_DISPLAY_NAME_CHARS:
        c.fail(p, f"must be at most {MAX_DISPLAY_NAME_CHARS} characters (got {len(template)})")
        ok = False
    return template if ok else None


def _check_description(c: _Checker, v: Any, p: str) -> Any:
    return c.want_str(v, p, allow_empty=True)


def _check_bool(c: _Checker, v: Any, p: str) -> Any:
    return c.want_bool(v, p)


def _check_validation_dataset(c: _Checker, v: Any, p: str) -> Any:
    name = c.want_str(v, p)
    if name is None:
        return None
    reason = object_path_problem(name)
    if reason is None and not name.endswith(".jsonl"):
        reason = "must end with .jsonl"
    if reason is None and "/" in name:
        reason = (
            "must be a file name in the dataset's folder (no '/'): a .jsonl elsewhere under the "
            "datasets prefix would start a job of its own"
        )
    if reason is not None:
        c.fail(p, f"{reason} (got {name!r})")
        return None
    return name


def _check_labels(c: _Checker, v: Any, p: str) -> Any:
    mapping = c.want_mapping(v, p)
    if mapping is None:
        return None
    labels: dict[str, str] = {}
    for key, raw_value in mapping.items():
        path = _join(p, key)
        if key in RESERVED_LABELS:
            c.fail(path, f"is reserved for sftpilot ({', '.join(sorted(RESERVED_LABELS))}) and set automatically")
            continue
        if not LABEL_KEY_RE.match(key):
            c.fail(path, "label keys must start with a lowercase letter and use only a-z, 0-9, '-', '_' (max 63)")
            continue
        value = str(raw_value) if isinstance(raw_value, int) and not isinstance(raw_value, bool) else raw_value
        if not isinstance(value, str) or not LABEL_VALUE_RE.match(value):
            c.fail(path, f"label values must be 0-63 of a-z, 0-9, '-', '_' (got {_show(value)})")
            continue
        labels[key] = value
    if len(labels) > MAX_USER_LABELS:
        c.fail(p, too_many_labels(len(labels)))
    return labels


def _check_kms(c: _Checker, v: Any, p: str) -> Any:
    return c.want_match(v, p, _KMS_RE, "projects/P/locations/L/keyRings/R/cryptoKeys/K")


def _check_service_account(c: _Checker, v: Any, p: str) -> Any:
    return c.want_match(v, p, _EMAIL_RE, "a service account e-mail")


def _check_prompt(c: _Checker, v: Any, p: str) -> JSON | None:
    if isinstance(v, str):
        v = {"prompt": v}
    mapping = c.want_mapping(v, p)
    if mapping is None:
        return None
    c.check_keys(mapping, p, _PROMPT_FIELDS)
    out: JSON = {}
    before = len(c.problems)
    if "prompt" not in mapping:
        c.fail(_join(p, "prompt"), "is required")
    else:
        out["prompt"] = c.want_str(mapping["prompt"], _join(p, "prompt"))
    if mapping.get("contains") is not None:
        contains = mapping["contains"]
        items = [contains] if isinstance(contains, str) else contains
        if isinstance(items, list) and all(isinstance(i, str) and i for i in items):
            out["contains"] = list(items)
        else:
            c.fail(_join(p, "contains"), f"must be a string or a list of non-empty strings (got {_show(contains)})")
    if mapping.get("regex") is not None:
        regex = c.want_str(mapping["regex"], _join(p, "regex"))
        if regex is not None:
            try:
                re.compile(regex)
                out["regex"] = regex
            except re.error as exc:
                c.fail(_join(p, "regex"), f"is not a valid regular expression: {exc}")
    if mapping.get("max_chars") is not None:
        out["max_chars"] = c.want_int(mapping["max_chars"], _join(p, "max_chars"), 1, 1_000_000)
    if mapping.get("reference") is not None:
        out["reference"] = c.want_str(mapping["reference"], _join(p, "reference"), allow_empty=True)
    return out if len(c.problems) == before else None


def _check_smoke_test(c: _Checker, v: Any, p: str) -> Any:
    mapping = c.want_mapping(v, p)
    if mapping is None:
        return None
    return _check_fields(c, mapping, p, _SMOKE_FIELDS)


def _check_prompts(c: _Checker, v: Any, p: str) -> Any:
    if not isinstance(v, list):
        c.fail(p, f"must be a list of prompts (got {_show(v)})")
        return None
    if len(v) > MAX_SMOKE_PROMPTS:
        c.fail(p, f"at most {MAX_SMOKE_PROMPTS} prompts (got {len(v)})")
        return None
    prompts = [_check_prompt(c, item, f"{p}[{i}]") for i, item in enumerate(v)]
    return None if any(x is None for x in prompts) else prompts


def _check_cleanup(c: _Checker, v: Any, p: str) -> Any:
    mapping = c.want_mapping(v, p)
    if mapping is None:
        return None
    return _check_fields(c, mapping, p, _CLEANUP_FIELDS)


def _section_check(check_section: Callable[[Mapping[str, Any]], tuple[JSON, list[tuple[str, str]]]]) -> FieldCheck:
    """A field check for a section validated by its own module (``gate``, ``budget``)."""

    def check(c: _Checker, v: Any, p: str) -> Any:
        mapping = c.want_mapping(v, p)
        if mapping is None:
            return None
        values, problems = check_section(mapping)
        for key, message in problems:
            c.fail(_join(p, key), message)
        return values

    return check


_PROMPT_FIELDS: Final[dict[str, object]] = {
    "prompt": None,
    "contains": None,
    "regex": None,
    "max_chars": None,
    "reference": None,
}

_SMOKE_FIELDS: Final[dict[str, FieldCheck]] = {
    "enabled": _check_bool,
    "prompts": _check_prompts,
    "from_validation": lambda c, v, p: c.want_int(v, p, 0, 100),
    "default_prompt": lambda c, v, p: c.want_str(v, p),
    "checkpoints": _check_bool,
    "compare_base": _check_bool,
    "max_output_tokens": lambda c, v, p: c.want_int(v, p, 1, 8192),
    "timeout_seconds": lambda c, v, p: c.want_int(v, p, 1, 300),
}

_CLEANUP_FIELDS: Final[dict[str, FieldCheck]] = {
    "enabled": _check_bool,
    "keep_last": lambda c, v, p: c.want_int(v, p, 1, 100),
    "dry_run": _check_bool,
    "on_failure": _check_bool,
}

_TOP_FIELDS: Final[dict[str, FieldCheck]] = {
    "lineage": _check_lineage,
    "base_model": _check_base_model,
    "base_checkpoint_id": lambda c, v, p: c.want_str(str(v) if isinstance(v, int) else v, p),
    "epochs": _check_epochs,
    "adapter_size": _check_adapter_size,
    "learning_rate_multiplier": _check_lr,
    "display_name": _check_display_name,
    "description": _check_description,
    "export_last_checkpoint_only": _check_bool,
    "validation_dataset": _check_validation_dataset,
    "labels": _check_labels,
    "kms_key_name": _check_kms,
    "service_account": _check_service_account,
    "smoke_test": _check_smoke_test,
    "cleanup": _check_cleanup,
    "gate": _section_check(check_gate_section),
    "budget": _section_check(check_budget_section),
}


def _check_fields(c: _Checker, mapping: Mapping[str, Any], path: str, fields: Mapping[str, FieldCheck]) -> JSON:
    """Check the keys a layer sets; ``null`` is kept as None (= reset to the built-in default)."""
    c.check_keys(mapping, path, fields)
    out: JSON = {}
    for key, check in fields.items():
        if key not in mapping:
            continue
        value = mapping[key]
        if value is None:
            out[key] = None
            continue
        cleaned = check(c, value, _join(path, key))
        if cleaned is not None:
            out[key] = cleaned
    return out


def _check_layer(raw: Any, source: str) -> _Layer:
    checker = _Checker(source)
    if raw is None:  # an empty file sets nothing
        return _Layer(source, {}, [])
    mapping = checker.want_mapping(raw, "")
    if mapping is None:
        return _Layer(source, {}, checker.problems)
    values = _check_fields(checker, mapping, "", _TOP_FIELDS)
    return _Layer(source, values, checker.problems)


# --- merging and building ----------------------------------------------------------------------

_NESTED: Final = frozenset({"labels", "smoke_test", "cleanup", "gate", "budget"})


def _merge(base: JSON, layer: JSON) -> JSON:
    """``layer`` over ``base``: nested mappings key by key; None deletes (built-in default)."""
    out = dict(base)
    for key, value in layer.items():
        if value is None:
            out.pop(key, None)
        elif key in _NESTED and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _strip_nones(data: JSON) -> JSON:
    return {
        k: (_strip_nones(v) if isinstance(v, dict) and k in _NESTED else v) for k, v in data.items() if v is not None
    }


def _build(values: JSON, sources: list[str]) -> TuningConfig:
    smoke = dict(values.get("smoke_test") or {})
    prompts = tuple(
        SmokePrompt(
            prompt=p["prompt"],
            contains=tuple(p.get("contains") or ()),
            regex=p.get("regex"),
            max_chars=p.get("max_chars"),
            reference=p.get("reference"),
        )
        for p in smoke.pop("prompts", None) or ()
    )
    smoke_cfg = SmokeTestConfig(**{k: v for k, v in smoke.items() if v is not None})
    cleanup_cfg = CleanupConfig(**{k: v for k, v in (values.get("cleanup") or {}).items() if v is not None})
    gate_values = {k: v for k, v in (values.get("gate") or {}).items() if v is not None}
    gate_cfg = GateOptions.from_config({"gate": gate_values})
    top = {k: v for k, v in values.items() if k not in _NESTED and v is not None}
    budget_problem = smoke_time_budget_problem(
        replace(TuningConfig(**top), smoke_test=replace(smoke_cfg, prompts=prompts))
    )
    if budget_problem is not None:
        source = ", ".join(sources)
        raise TuningConfigError(source, [ConfigProblem("smoke_test", budget_problem, source)])
    labels = dict(values.get("labels") or {})
    if len(labels) > MAX_USER_LABELS:
        source = ", ".join(sources)
        raise TuningConfigError(
            source,
            [ConfigProblem("labels", f"{too_many_labels(len(labels))} (after merging {source})", source)],
        )
    return replace(
        TuningConfig(**top),
        labels=labels,
        smoke_test=replace(smoke_cfg, prompts=prompts),
        cleanup=cleanup_cfg,
        gate=gate_cfg,
        budget=BudgetOptions.from_config(values),
    )


# --- time budget ---------------------------------------------------------------------------------


def smoke_test_call_count(config: TuningConfig) -> tuple[int, int]:
    """(prompts, targets) a config can ask for at most, as far as the config alone tells.

    Prompts: the configured ones, else ``from_validation`` (at least the one default prompt).
    Targets: the tuned endpoint, one per intermediate checkpoint with ``checkpoints: true`` (one
    per epoch but the last; only counted when ``epochs`` is set, Vertex picks it otherwise),
    and the base model with ``compare_base``.
    """
    smoke = config.smoke_test
    prompts = len(smoke.prompts) or max(smoke.from_validation, 1)
    targets = 1
    if smoke.checkpoints and not config.export_last_checkpoint_only and config.epochs:
        targets += config.epochs - 1
    if smoke.compare_base:
        targets += 1
    return prompts, targets


def smoke_time_budget_problem(config: TuningConfig) -> str | None:
    """Why a config's smoke test cannot finish inside one completion invocation, or None.

    A config over the budget would be stopped by the function timeout and redelivered; the
    message gives the arithmetic so the user sees which knob to turn.

    >>> smoke_time_budget_problem(TuningConfig()) is None
    True
    >>> slow = TuningConfig(smoke_test=SmokeTestConfig(from_validation=10, timeout_seconds=60))
    >>> print(smoke_time_budget_problem(slow).split(";")[0])  # doctest: +NORMALIZE_WHITESPACE
    worst case 10 prompt(s) x 1 target(s) x (60 s timeout x 3 attempts + 3 s backoff) = 1830 s,
    over the 480 s the completion function has for it (540 s limit - 60 s for the rest)
    """
    if not config.smoke_test.enabled:
        return None
    prompts, targets = smoke_test_call_count(config)
    retry = SMOKE_CALL_RETRY
    per_call = retry.worst_case_seconds(config.smoke_test.timeout_seconds)
    total = prompts * targets * per_call
    if total <= SMOKE_TEST_TIME_BUDGET_SECONDS:
        return None
    backoff = per_call - config.smoke_test.timeout_seconds * retry.attempts
    budget = SMOKE_TEST_TIME_BUDGET_SECONDS
    return (
        f"worst case {prompts} prompt(s) x {targets} target(s) x ({config.smoke_test.timeout_seconds} s timeout x "
        f"{retry.attempts} attempts + {backoff:g} s backoff) = {total:g} s, over the {budget} s "
        f"the completion function has for it ({COMPLETION_FUNCTION_TIMEOUT_SECONDS} s limit - "
        f"{COMPLETION_RESERVE_SECONDS} s for the rest); lower smoke_test.timeout_seconds or the number of prompts "
        "(prompts / from_validation), or turn off checkpoints / compare_base"
    )


# --- object names --------------------------------------------------------------------------------


def object_path_problem(name: str) -> str | None:
    """Why a (relative) object path is unsafe, or None: empty/dot segments, control characters, '#'.

    >>> object_path_problem("faq/../x.jsonl")
    "contains a '..' path segment"
    >>> object_path_problem("faq/v1.jsonl") is None
    True
    """
    if _CONTROL_RE.search(name):
        return "contains a control character"
    if "#" in name:
        return "contains '#' (it would be read as a URI fragment)"
    segments = name.split("/")
    if any(s == ".." for s in segments):
        return "contains a '..' path segment"
    if any(s == "." for s in segments):
        return "contains a '.' path segment"
    if any(s == "" for s in segments):
        return "contains an empty path segment (leading, trailing or double '/')"
    return None
