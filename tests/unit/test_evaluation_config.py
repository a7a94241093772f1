"""``evaluation_config`` in tuning.yaml: validation with precise errors, the spec it submits, the
request google-genai sends for it, and the read-back of Vertex's evaluation runs."""

from __future__ import annotations

import pytest
from google.genai import _common, tunings

from shared.adapters.vertex import VertexTuningBackend, job_from_wire
from shared.errors import TuningConfigError
from shared.ports import TuningJobSpec
from shared.submission import build_spec
from shared.tuning_config import TuningConfig, load_tuning_yaml
from shared.tuning_view import tuning_view

VALID = """
evaluation_config:
  metrics:
    - rouge_1
    - name: helpfulness
      prompt_template: "Rate the answer from 1 to 5: {prediction}"
      judge_model_system_instruction: "You are a strict grader."
  output_config:
    gcs_destination:
      output_uri_prefix: gs://my-bucket/evaluations/
  autorater_config:
    autorater_model: gemini-2.5-pro
    sampling_count: 4
    flip_enabled: true
"""


def test_a_valid_section_is_kept_and_round_trips():
    config = load_tuning_yaml(VALID)
    assert config.evaluation_config is not None
    assert config.evaluation_config["metrics"][0] == {"name": "rouge_1"}
    assert config.evaluation_config["autorater_config"]["sampling_count"] == 4
    assert TuningConfig.from_dict(config.to_dict()) == config
    assert load_tuning_yaml("epochs: 2\n").evaluation_config is None


@pytest.mark.parametrize(
    ("yaml_text", "path", "fragment"),
    [
        ("evaluation_config: {metrics: [bleu]}", "evaluation_config.output_config", "is required"),
        (
            "evaluation_config: {output_config: {gcs_destination: {output_uri_prefix: gs://b/e/}}}",
            "evaluation_config.metrics",
            "non-empty list",
        ),
        (
            "evaluation_config: {metrics: [bleu], output_config: {gcs_destination: {output_uri_prefix: /tmp/x}}}",
            "evaluation_config.output_config.gcs_destination.output_uri_prefix",
            "gs://bucket/prefix",
        ),
        (
            "evaluation_config: {metrics: [fluency], output_config: {gcs_destination: {output_uri_prefix: gs://b/e}}}",
            "evaluation_config.metrics[0].prompt_template",
            "model-based metric",
        ),
        (
            "evaluation_config: {metrics: [rouge_l], output_config: {gcs_destination: {output_uri_prefix: gs://b/e}}}",
            "evaluation_config.metrics[0].name",
            "rougel",
        ),
        (
            "evaluation_config: {metrics: [bleu], output_config: {gcs_destination: {output_uri_prefix: gs://b/e}},"
            " autorater_config: {sampling_count: 40}}",
            "evaluation_config.autorater_config.sampling_count",
            "from 1 to 32",
        ),
        (
            "evaluation_config: {metrics: [bleu], outputConfig: {}, output_config: {gcs_destination: "
            "{output_uri_prefix: gs://b/e}}}",
            "evaluation_config.outputConfig",
            "unknown key",
        ),
    ],
)
def test_a_bad_section_names_the_path(yaml_text, path, fragment):
    with pytest.raises(TuningConfigError) as raised:
        load_tuning_yaml(yaml_text + "\n")
    messages = [f"{p.path}: {p.message}" for p in raised.value.problems]
    assert any(m.startswith(f"{path}:") and fragment in m for m in messages), messages


def test_the_adapter_sends_it_typed_in_the_rest_shape():
    config = load_tuning_yaml(VALID).evaluation_config
    backend = VertexTuningBackend("p", "us-central1", base_url="http://127.0.0.1:9")
    sdk_config = backend._create_config(
        TuningJobSpec("gemini-2.5-flash", "gs://b/t.jsonl", "t", evaluation_config=config)
    )
    wire: dict = {}
    tunings._CreateTuningJobConfig_to_vertex(sdk_config, wire)
    sent = _common.convert_to_dict(wire)["supervisedTuningSpec"]["evaluationConfig"]
    rouge, judged = sent["metrics"]
    assert rouge["rouge_spec"] == {"rouge_type": "rouge1"}
    assert judged["pointwise_metric_spec"]["metric_prompt_template"].startswith("Rate the answer")
    assert sent["outputConfig"]["gcs_destination"]["output_uri_prefix"] == "gs://my-bucket/evaluations/"
    assert sent["autoraterConfig"] == {"autoraterModel": "gemini-2.5-pro", "samplingCount": 4, "flipEnabled": True}


def test_without_it_nothing_is_sent():
    backend = VertexTuningBackend("p", "us-central1", base_url="http://127.0.0.1:9")
    sdk_config = backend._create_config(TuningJobSpec("gemini-2.5-flash", "gs://b/t.jsonl", "t"))
    assert sdk_config.evaluation_config is None


def test_the_evaluation_runs_are_read_back_into_the_tuning_view():
    job = job_from_wire(
        {
            "name": "projects/p/locations/l/tuningJobs/1",
            "state": "JOB_STATE_SUCCEEDED",
            "supervisedTuningSpec": {
                "evaluationConfig": {
                    "metrics": [{"bleuSpec": {}}],
                    "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://b/evals/"}},
                }
            },
            "evaluateDatasetRuns": [
                {
                    "checkpointId": "2",
                    "evaluationRun": "projects/p/locations/l/evaluationRuns/9",
                    "evaluateDatasetResponse": {
                        "aggregationOutput": {"aggregationResults": [{"bleuMetricValue": {"score": 0.4}}]},
                        "outputInfo": {"gcsOutputDirectory": "gs://b/evals/run-9/"},
                    },
                },
                {"checkpointId": "1", "error": {"code": 3, "message": "bad template"}},
            ],
        }
    )
    evaluation = tuning_view(job).evaluation
    assert evaluation is not None
    assert evaluation["output_uri_prefix"] == "gs://b/evals/"
    first, second = evaluation["runs"]
    assert first["aggregation_results"] == [{"bleuMetricValue": {"score": 0.4}}]
    assert first["output_directory"] == "gs://b/evals/run-9/"
    assert first["evaluation_run"].endswith("/evaluationRuns/9")
    assert second["error"]["message"] == "bad template"
    assert job_from_wire({"name": "n", "state": "JOB_STATE_RUNNING"}).evaluation is None


def test_the_submitted_spec_carries_it():
    from test_submission import _record  # the submission tests' record builder

    config = load_tuning_yaml(VALID).evaluation_config
    rec = _record(evaluation_config=config)
    assert build_spec(rec, "prod").evaluation_config == config
