from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.adapters.fakes import FakeBlobStore
from shared.errors import BlobReadError, TuningConfigError
from shared.tuning_config import (
    MAX_CONFIG_BYTES,
    SmokePrompt,
    TuningConfig,
    config_folders,
    load_defaults,
    load_tuning_yaml,
    parse_tuning_yaml,
    render_display_name,
    resolve_config,
)

BUCKET = "bkt"
FULL_EXAMPLE = """
lineage: support-bot
base_model: gemini-2.5-flash
epochs: 3
adapter_size: 4
learning_rate_multiplier: 1.0
display_name: "{lineage}-{name}-{generation}"
description: ""
export_last_checkpoint_only: false
validation_dataset: null
labels: {team: ml}
kms_key_name: null
service_account: null
smoke_test:
  enabled: true
  prompts:
    - prompt: "How do I reset my password?"
      contains: ["— Acme Support"]
      regex: "^Hi there!"
      max_chars: 800
      reference: "Hi there! ... — Acme Support"
  from_validation: 5
  default_prompt: "Say hello."
  checkpoints: false
  compare_base: false
  max_output_tokens: 256
  timeout_seconds: 60
cleanup:
  enabled: false
  keep_last: 1
  dry_run: false
  on_failure: false
"""


def _problems(exc: TuningConfigError) -> dict[str, str]:
    return {p.path: p.message for p in exc.problems}


def test_documented_example_parses_to_the_documented_values():
    cfg = load_tuning_yaml(FULL_EXAMPLE)
    assert cfg.lineage == "support-bot"
    assert (cfg.epochs, cfg.adapter_size, cfg.learning_rate_multiplier) == (3, 4, 1.0)
    assert cfg.labels == {"team": "ml"}
    assert cfg.smoke_test.prompts == (
        SmokePrompt(
            prompt="How do I reset my password?",
            contains=("— Acme Support",),
            regex="^Hi there!",
            max_chars=800,
            reference="Hi there! ... — Acme Support",
        ),
    )
    as_dict = cfg.to_dict()
    assert as_dict["smoke_test"]["prompts"][0]["contains"] == ["— Acme Support"]
    assert as_dict["cleanup"]["keep_last"] == 1


def test_empty_file_means_every_default():
    cfg = load_tuning_yaml("")
    assert cfg == TuningConfig()
    d = cfg.to_dict()
    assert d["base_model"] == "gemini-2.5-flash"
    assert d["epochs"] is None and d["adapter_size"] is None
    assert d["display_name"] == "{lineage}-{name}-{generation}"
    assert d["smoke_test"]["enabled"] is True and d["smoke_test"]["prompts"] == []
    assert d["smoke_test"]["from_validation"] == 5 and d["smoke_test"]["default_prompt"] == "Say hello."
    assert d["cleanup"] == {"enabled": False, "keep_last": 1, "dry_run": False, "on_failure": False}


def test_dict_form_round_trips():
    cfg = load_tuning_yaml(FULL_EXAMPLE)
    assert TuningConfig.from_dict(cfg.to_dict()) == cfg


def test_every_problem_is_listed_with_its_dotted_path():
    text = """
epochs: 0
adapter_size: 3
learning_rate_multiplier: -1
display_name: "{lineage}-{user}"
basemodel: gemini-2.5-flash
labels: {Team: ml, managed-by: me, env: true}
smoke_test:
  promts: []
  prompts:
    - prompt: ok
      regex: "(["
    - contains: 5
cleanup: {keep_last: 0}
"""
    with pytest.raises(TuningConfigError) as info:
        parse_tuning_yaml(text, "gs://bkt/datasets/faq/tuning.yaml")
    problems = _problems(info.value)
    assert set(problems) == {
        "epochs",
        "adapter_size",
        "learning_rate_multiplier",
        "display_name",
        "basemodel",
        "labels.Team",
        "labels.managed-by",
        "labels.env",
        "smoke_test.promts",
        "smoke_test.prompts[0].regex",
        "smoke_test.prompts[1].prompt",
        "smoke_test.prompts[1].contains",
        "cleanup.keep_last",
    }
    assert "1 to 100" in problems["epochs"]
    assert "1, 2, 4, 8, 16" in problems["adapter_size"]
    assert "{user}" in problems["display_name"]
    assert "unknown key" in problems["basemodel"] and "base_model" in problems["basemodel"]
    assert "reserved" in problems["labels.managed-by"]
    assert "quote it" in problems["labels.env"]
    assert "regular expression" in problems["smoke_test.prompts[0].regex"]
    assert problems["smoke_test.prompts[1].prompt"] == "is required"
    assert all(p.source == "gs://bkt/datasets/faq/tuning.yaml" for p in info.value.problems)


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(TuningConfigError) as info:
        parse_tuning_yaml("epochs: 3\nlabels: {team: ml\n", "t.yaml")
    [problem] = info.value.problems
    assert problem.path == ""
    assert "not valid YAML" in problem.message and "line 3" in problem.message


def test_duplicate_keys_are_refused_not_silently_overwritten():
    with pytest.raises(TuningConfigError) as info:
        parse_tuning_yaml("epochs: 3\nepochs: 5\n", "t.yaml")
    assert "duplicate key 'epochs'" in info.value.problems[0].message


def test_top_level_must_be_a_mapping():
    with pytest.raises(TuningConfigError) as info:
        parse_tuning_yaml("- epochs: 3\n", "t.yaml")
    assert "mapping" in info.value.problems[0].message


@pytest.mark.parametrize(
    "value",
    ["../other/holdout.jsonl", "sub/holdout.jsonl", "holdout.csv", "gs://b/x.jsonl", "a\x01.jsonl"],
)
def test_validation_dataset_must_be_a_jsonl_file_name_in_the_same_folder(value):
    with pytest.raises(TuningConfigError) as info:
        TuningConfig.from_dict({"validation_dataset": value})
    assert info.value.problems[0].path == "validation_dataset"


def test_prompt_shorthand_and_single_contains_string():
    cfg = load_tuning_yaml("smoke_test:\n  prompts:\n    - Say hi\n    - {prompt: Bye, contains: Acme}\n")
    assert [p.prompt for p in cfg.smoke_test.prompts] == ["Say hi", "Bye"]
    assert cfg.smoke_test.prompts[1].contains == ("Acme",)


def test_integer_label_values_become_strings_and_bad_values_are_named():
    assert load_tuning_yaml("labels: {version: 2}").labels == {"version": "2"}
    with pytest.raises(TuningConfigError) as info:
        load_tuning_yaml("labels: {team: 'ML Team'}")
    assert info.value.problems[0].path == "labels.team"


def test_render_display_name_fills_the_template_and_enforces_the_length():
    when = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    cfg = TuningConfig(display_name="{lineage}/{name} #{generation} {date}")
    assert render_display_name(cfg, lineage="faq", name="v1", generation=9, when=when) == "faq/v1 #9 2026-03-04"
    with pytest.raises(TuningConfigError) as info:
        render_display_name(TuningConfig(), lineage="faq", name="x" * 150, generation=9, when=when)
    assert info.value.problems[0].path == "display_name"
    assert "128" in info.value.problems[0].message


def test_config_folders_root_first():
    assert config_folders("datasets/a/b/c.jsonl", "datasets/") == ["datasets/", "datasets/a/", "datasets/a/b/"]
    with pytest.raises(ValueError):
        config_folders("other/a.jsonl", "datasets/")


def _store(files: dict[str, str]) -> FakeBlobStore:
    blobs = FakeBlobStore()
    for name, text in files.items():
        blobs.put(BUCKET, name, text.encode())
    return blobs


def test_nearest_folder_wins_and_mappings_merge_key_by_key():
    blobs = _store(
        {
            "datasets/tuning.yaml": "epochs: 5\nlabels: {team: ml, env: prod}\nsmoke_test: {max_output_tokens: 64}\n",
            "datasets/faq/tuning.yaml": "epochs: 2\nlabels: {env: dev}\nsmoke_test: {prompts: [Hi]}\n",
            "datasets/faq/2026/tuning.yaml": "adapter_size: null\ncleanup: {enabled: true}\n",
            "datasets/other/tuning.yaml": "epochs: 9\n",
        }
    )
    cfg = resolve_config(blobs, BUCKET, "datasets/faq/2026/v1.jsonl", "datasets/", {"adapter_size": 8, "epochs": 1})
    assert cfg.epochs == 2
    assert cfg.adapter_size is None  # explicit null resets to the built-in default
    assert cfg.labels == {"team": "ml", "env": "dev"}
    assert cfg.smoke_test.max_output_tokens == 64
    assert [p.prompt for p in cfg.smoke_test.prompts] == ["Hi"]
    assert cfg.cleanup.enabled is True and cfg.cleanup.keep_last == 1


def test_defaults_apply_below_every_file():
    blobs = _store({"datasets/faq/tuning.yaml": "epochs: 2\n"})
    defaults = TuningConfig(base_model="gemini-2.5-pro", epochs=7, labels={"cost-center": "42"})
    cfg = resolve_config(blobs, BUCKET, "datasets/faq/v1.jsonl", "datasets/", defaults)
    assert (cfg.base_model, cfg.epochs, cfg.labels) == ("gemini-2.5-pro", 2, {"cost-center": "42"})


def test_problems_of_several_files_are_reported_together_with_their_sources():
    blobs = _store({"datasets/tuning.yaml": "epochs: many\n", "datasets/faq/tuning.yaml": "cleanup: {keep_last: -1}\n"})
    with pytest.raises(TuningConfigError) as info:
        resolve_config(blobs, BUCKET, "datasets/faq/v1.jsonl", "datasets/", {"adapter_size": 5})
    found = {(p.source, p.path) for p in info.value.problems}
    assert found == {
        ("deployment defaults", "adapter_size"),
        ("gs://bkt/datasets/tuning.yaml", "epochs"),
        ("gs://bkt/datasets/faq/tuning.yaml", "cleanup.keep_last"),
    }


def test_oversized_tuning_yaml_is_a_config_problem_not_a_retry():
    blobs = _store({"datasets/faq/tuning.yaml": "# " + "x" * MAX_CONFIG_BYTES + "\n"})
    with pytest.raises(TuningConfigError) as info:
        resolve_config(blobs, BUCKET, "datasets/faq/v1.jsonl", "datasets/")
    assert "larger than" in info.value.problems[0].message


def test_transient_read_failure_propagates_as_retryable():
    blobs = _store({"datasets/faq/tuning.yaml": "epochs: 2\n"})
    blobs.failures.fail_next("read_bytes", BlobReadError("gs://bkt/datasets/tuning.yaml", "503"))
    with pytest.raises(BlobReadError):
        resolve_config(blobs, BUCKET, "datasets/faq/v1.jsonl", "datasets/")


def test_merged_label_count_is_capped():
    many_a = {f"a{i}": "x" for i in range(40)}
    many_b = {f"b{i}": "x" for i in range(40)}
    blobs = FakeBlobStore()
    blobs.put(BUCKET, "datasets/faq/tuning.yaml", ("labels: " + str(many_b).replace("'", '"')).encode())
    with pytest.raises(TuningConfigError) as info:
        resolve_config(blobs, BUCKET, "datasets/faq/v1.jsonl", "datasets/", {"labels": many_a})
    assert info.value.problems[0].path == "labels"
    assert "at most 53 labels (got 80)" in info.value.problems[0].message


def test_user_labels_leave_room_for_ours_and_for_googles():
    at_limit = {f"k{i}": "v" for i in range(53)}
    assert len(load_tuning_yaml("labels: " + str(at_limit).replace("'", '"')).labels) == 53
    over = {f"k{i}": "v" for i in range(54)}
    with pytest.raises(TuningConfigError) as info:
        load_tuning_yaml("labels: " + str(over).replace("'", '"'))
    (problem,) = info.value.problems
    assert problem.path == "labels"
    assert problem.message == (
        "at most 53 labels (got 54): Vertex allows 64 per resource, sftpilot sets 3 and keeps 8 free for labels"
        " Google adds"
    )


def test_load_defaults_reads_local_and_gs_files(tmp_path):
    path = tmp_path / "defaults.yaml"
    path.write_text("base_model: gemini-2.5-flash-lite\n")
    assert load_defaults(str(path)) == {"base_model": "gemini-2.5-flash-lite"}
    blobs = _store({"config/defaults.yaml": "epochs: 4\n"})
    assert load_defaults("gs://bkt/config/defaults.yaml", blobs) == {"epochs": 4}
    with pytest.raises(TuningConfigError) as info:
        load_defaults(str(tmp_path / "missing.yaml"))
    assert "cannot read" in info.value.problems[0].message


def test_a_smoke_test_that_cannot_fit_the_completion_functions_time_is_rejected_with_the_arithmetic():
    assert load_tuning_yaml("smoke_test: {from_validation: 5}").smoke_test.timeout_seconds == 30  # 465 s: fits
    with pytest.raises(TuningConfigError) as info:
        load_tuning_yaml("smoke_test: {from_validation: 5, timeout_seconds: 60}")
    (problem,) = info.value.problems
    assert problem.path == "smoke_test"
    assert problem.message.startswith(
        "worst case 5 prompt(s) x 1 target(s) x (60 s timeout x 3 attempts + 3 s backoff) = 915 s, over the 480 s"
    )
    assert "540 s limit - 60 s" in problem.message


def test_the_budget_counts_checkpoint_and_base_targets():
    # 2 prompts x (tuned + 3 intermediate checkpoints + base) x 93 s = 930 s
    with pytest.raises(TuningConfigError) as info:
        load_tuning_yaml("epochs: 4\nsmoke_test: {prompts: [a, b], checkpoints: true, compare_base: true}")
    assert "2 prompt(s) x 5 target(s)" in info.value.problems[0].message
    # the same with only the last checkpoint exported: 2 x 2 x 93 = 372 s
    ok = load_tuning_yaml(
        "epochs: 4\nexport_last_checkpoint_only: true\n"
        "smoke_test: {prompts: [a, b], checkpoints: true, compare_base: true}"
    )
    assert ok.smoke_test.checkpoints
    assert load_tuning_yaml("smoke_test: {enabled: false, from_validation: 100, timeout_seconds: 300}").smoke_test


def test_merged_layers_are_checked_against_the_budget_together():
    blobs = FakeBlobStore()
    blobs.put(BUCKET, "datasets/faq/tuning.yaml", b"smoke_test: {timeout_seconds: 120}\n")
    with pytest.raises(TuningConfigError) as info:
        resolve_config(blobs, BUCKET, "datasets/faq/v1.jsonl", "datasets/", {"smoke_test": {"from_validation": 3}})
    assert "3 prompt(s) x 1 target(s) x (120 s timeout" in info.value.problems[0].message


@pytest.mark.parametrize(
    ("account", "allowed", "ok"),
    [
        (None, (), True),
        ("a@p.iam.gserviceaccount.com", ("a@p.iam.gserviceaccount.com",), True),
        ("a@p.iam.gserviceaccount.com", (), False),
        ("b@p.iam.gserviceaccount.com", ("a@p.iam.gserviceaccount.com",), False),
    ],
)
def test_service_account_allow_list(account, allowed, ok):
    from shared.tuning_config import TuningConfig, check_service_account

    config = TuningConfig(service_account=account)
    if ok:
        check_service_account(config, allowed)
        return
    with pytest.raises(TuningConfigError) as caught:
        check_service_account(config, allowed)
    [problem] = caught.value.problems
    assert problem.path == "service_account"
    assert account in problem.message and "SFTPILOT_TUNING_SERVICE_ACCOUNTS" in problem.message
