"""``evaluation_config`` in tuning.yaml: Vertex's own tuning evaluation, passed through and read back.

Vertex supervised tuning can evaluate the tuned model (and its checkpoints) itself:
``SupervisedTuningSpec.evaluationConfig`` with ``metrics`` (required), ``outputConfig``
(required; ``gcsDestination.outputUriPrefix``) and an optional ``autoraterConfig``
(``autoraterModel``, ``samplingCount``, ``flipEnabled``); the job reports the runs in
``TuningJob.evaluateDatasetRuns`` (``checkpointId``, ``evaluationRun``, ``error``,
``evaluateDatasetResponse``). References:
https://docs.cloud.google.com/dotnet/docs/reference/Google.Cloud.AIPlatform.V1/latest/Google.Cloud.AIPlatform.V1.EvaluationConfig
(fields and which are required),
https://googleapis.dev/dotnet/Google.Apis.Aiplatform.v1beta1/latest/api/Google.Apis.Aiplatform.v1beta1.Data.GoogleCloudAiplatformV1beta1SupervisedTuningSpec.html
(``evaluationConfig`` on the spec),
https://docs.cloud.google.com/ruby/docs/reference/google-cloud-ai_platform-v1/latest/Google-Cloud-AIPlatform-V1-EvaluateDatasetRun
(the read-back). It gives scores, no verdict: sftpilot's gate (:mod:`shared.gate`) decides.

The tuning.yaml form uses google-genai's field names, because the Vertex adapter sends it
typed (``types.EvaluationConfig`` on ``CreateTuningJobConfig.evaluation_config``, which the
SDK turns into the REST shape; its ``Metric`` is a name, plus a prompt template for a
model-based metric)::

    evaluation_config:
      metrics:
        - name: rouge_1              # exact_match | bleu | rouge_1 | rouge_2 (rouge_l: see below)
        - name: helpfulness          # any other name is a model-based (pointwise) metric:
          prompt_template: "Rate the answer 1-5: {prediction}"   # required for it
          judge_model_system_instruction: "You are a strict grader."  # optional
      output_config:
        gcs_destination:
          output_uri_prefix: gs://my-bucket/evaluations/
      autorater_config:              # optional
        autorater_model: gemini-2.5-pro
        sampling_count: 4            # 1..32
        flip_enabled: true

A layer replaces the whole section (``null`` removes it). ROUGE-L is refused: google-genai
lower-cases metric names (``Metric.validate_name``) and derives ``rougeType`` from the name, so it
would send ``rougel``, which the ``RougeSpec`` reference does not list (``rougen[1-9]``,
``rougeL``, ``rougeLsum``). The read-back (``record.tuning.evaluation``) is parsed by the Vertex
adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.records import JSON

COMPUTED_METRICS: tuple[str, ...] = ("exact_match", "bleu", "rouge_1", "rouge_2")
"""Metric names the SDK maps to ``exactMatchSpec`` / ``bleuSpec`` / ``rougeSpec`` (no judge model)."""

UNSENDABLE_METRICS: dict[str, str] = {
    name: (
        "google-genai lower-cases metric names, so it would send rougeSpec.rougeType "
        f"{name.replace('_', '').lower()!r}, while Vertex's RougeSpec lists rougeL and rougeLsum; "
        "use rouge_1 / rouge_2 here, or sftpilot's own gate (gate.metric: rougeL)"
    )
    for name in ("rouge_l", "rouge_l_sum", "rougeL", "rougeLsum")
}
"""Names refused with the reason (the installed SDK cannot send them correctly)."""

_TOP_KEYS = ("metrics", "output_config", "autorater_config")
_METRIC_KEYS = ("name", "prompt_template", "judge_model_system_instruction")
_AUTORATER_KEYS = ("autorater_model", "sampling_count", "flip_enabled")


def _unknown(mapping: Mapping[str, Any], known: tuple[str, ...], path: str) -> list[tuple[str, str]]:
    return [(f"{path}{key}", f"unknown key; known keys: {', '.join(known)}") for key in mapping if key not in known]


def _check_metric(index: int, item: Any) -> tuple[JSON | None, list[tuple[str, str]]]:
    path = f"metrics[{index}]"
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping):
        return None, [(path, f"must be a metric name or a mapping with name (got {item!r})")]
    problems = _unknown(item, _METRIC_KEYS, f"{path}.")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append((f"{path}.name", f"must be a non-empty string (got {name!r})"))
        return None, problems
    template = item.get("prompt_template")
    if name in UNSENDABLE_METRICS:
        problems.append((f"{path}.name", UNSENDABLE_METRICS[name]))
    elif name in COMPUTED_METRICS:
        if template is not None:
            problems.append((f"{path}.prompt_template", f"{name} is computed, not judged: remove prompt_template"))
    elif not isinstance(template, str) or not template.strip():
        problems.append(
            (
                f"{path}.prompt_template",
                f"{name!r} is not one of {', '.join(COMPUTED_METRICS)}, so it is a model-based metric "
                "and needs a non-empty prompt_template",
            )
        )
    instruction = item.get("judge_model_system_instruction")
    if instruction is not None and not isinstance(instruction, str):
        problems.append((f"{path}.judge_model_system_instruction", f"must be a string (got {instruction!r})"))
    return {k: v for k, v in item.items() if k in _METRIC_KEYS and v is not None}, problems


def _check_output(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, Mapping):
        return [("output_config", f"must be a mapping with gcs_destination (got {value!r})")]
    problems = _unknown(value, ("gcs_destination",), "output_config.")
    destination = value.get("gcs_destination")
    if not isinstance(destination, Mapping):
        return [*problems, ("output_config.gcs_destination", "is required: a mapping with output_uri_prefix")]
    problems += _unknown(destination, ("output_uri_prefix",), "output_config.gcs_destination.")
    prefix = destination.get("output_uri_prefix")
    if not isinstance(prefix, str) or not prefix.startswith("gs://") or len(prefix) <= len("gs://"):
        problems.append(
            ("output_config.gcs_destination.output_uri_prefix", f"must be a gs://bucket/prefix URI (got {prefix!r})")
        )
    return problems


def _check_autorater(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, Mapping):
        return [("autorater_config", f"must be a mapping (got {value!r})")]
    problems = _unknown(value, _AUTORATER_KEYS, "autorater_config.")
    model = value.get("autorater_model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        problems.append(("autorater_config.autorater_model", f"must be a model name (got {model!r})"))
    count = value.get("sampling_count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 32):
        problems.append(("autorater_config.sampling_count", f"must be an integer from 1 to 32 (got {count!r})"))
    flip = value.get("flip_enabled")
    if flip is not None and not isinstance(flip, bool):
        problems.append(("autorater_config.flip_enabled", f"must be true or false (got {flip!r})"))
    return problems


def check_evaluation_section(section: Mapping[str, Any]) -> tuple[JSON, list[tuple[str, str]]]:
    """Validate an ``evaluation_config:`` mapping; (cleaned value, ``(key path, message)`` problems).

    >>> check_evaluation_section({"metrics": ["rouge_1"]})[1]
    [('output_config', 'is required: a mapping with gcs_destination.output_uri_prefix')]
    """
    problems = _unknown(section, _TOP_KEYS, "")
    metrics = section.get("metrics")
    cleaned_metrics: list[JSON] = []
    if not isinstance(metrics, list) or not metrics:
        problems.append(("metrics", f"is required: a non-empty list of metrics (got {metrics!r})"))
    else:
        for index, item in enumerate(metrics):
            metric, metric_problems = _check_metric(index, item)
            problems += metric_problems
            if metric is not None:
                cleaned_metrics.append(metric)
    if "output_config" not in section:
        problems.append(("output_config", "is required: a mapping with gcs_destination.output_uri_prefix"))
    else:
        problems += _check_output(section["output_config"])
    if section.get("autorater_config") is not None:
        problems += _check_autorater(section["autorater_config"])
    out: JSON = {"metrics": cleaned_metrics, "output_config": section.get("output_config")}
    if section.get("autorater_config") is not None:
        out["autorater_config"] = dict(section["autorater_config"])
    return out, problems
