"""The deployment's variables, the derived plan, the role and index tables, the generated README."""

from __future__ import annotations

import dataclasses
import json

import hcl2
import pytest
import yaml
from gcp_testing import EXAMPLE_VARS, GCP, PROJECT_NUMBER, unquote

from deploy.gcp import config
from deploy.gcp.config import TUNING_REGIONS, DeploymentVars, DeployVarsError, load_vars, parse_tfvars
from deploy.gcp.generate import main as generate_main
from deploy.gcp.generate import terraform_variables
from shared.adapters.fakes import FakeBlobStore
from shared.adapters.firestore import REQUIRED_COMPOSITE_INDEXES
from shared.settings import Settings
from shared.tuning_config import resolve_config

MINIMAL = {"project": "acme-ml", "bucket": "acme-ml-data"}


# --- the variables-file parser --------------------------------------------------------------------


def test_parser_reads_every_literal_form() -> None:
    text = """
    # comment
    name = "a \\"quoted\\" value" // trailing comment
    count = 12
    ratio = -0.25
    on = true
    off = false
    nothing = null
    /* block
       comment */
    items = [
      "x",   # first
      "y",
    ]
    labels = { team = "ml", "cost-center": "cc1" }
    dollars = "$${not_a_template}"
    """
    assert parse_tfvars(text) == {
        "name": 'a "quoted" value',
        "count": 12,
        "ratio": -0.25,
        "on": True,
        "off": False,
        "nothing": None,
        "items": ["x", "y"],
        "labels": {"team": "ml", "cost-center": "cc1"},
        "dollars": "${not_a_template}",
    }


def test_parser_agrees_with_python_hcl2_on_the_example() -> None:
    with EXAMPLE_VARS.open() as handle:
        reference = unquote(hcl2.load(handle))
    assert parse_tfvars(EXAMPLE_VARS.read_text()) == reference


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('project = "p"\nbucket = "${var.x}"\n', 2, "template expressions"),
        ('project = "p"\nproject = "q"\n', 2, "set twice"),
        ('a = "unterminated\n', 1, "unterminated string"),
        ("a = [1, 2\n", 2, "expected ',' or ']'"),
        ("a = upper(x)\n", 1, "expected a literal value"),
        ('a = "x" b = "y"\n', 1, "one variable per line"),
        ("a = <<EOT\nx\nEOT\n", 1, "heredoc"),
    ],
)
def test_parser_rejects_what_it_cannot_read_with_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(DeployVarsError) as caught:
        parse_tfvars(text, "vars.tfvars")
    assert caught.value.line == line
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"vars.tfvars:{line}:")


# --- the variables ------------------------------------------------------------------------------


def test_python_variables_mirror_terraform_variables() -> None:
    declared = terraform_variables()
    fields = {f.name: f for f in dataclasses.fields(DeploymentVars)}
    assert set(declared) == set(fields)
    for name, spec in declared.items():
        field = fields[name]
        if "default" not in spec:
            assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, name
            continue
        has_factory = field.default_factory is not dataclasses.MISSING
        python_default = field.default_factory() if has_factory else field.default
        tf_default = unquote(spec["default"])
        if isinstance(python_default, tuple):
            python_default = list(python_default)
        assert python_default == tf_default, name
        nullable = "None" in str(field.type)
        assert nullable == (tf_default is None), f"{name}: null default <=> Optional type"


def test_concrete_defaults_match_the_settings_defaults() -> None:
    settings = {f.name: f.default for f in dataclasses.fields(Settings)}
    plan = DeploymentVars(**MINIMAL)
    assert plan.datasets_prefix == settings["datasets_prefix"]
    assert plan.reports_prefix == settings["reports_prefix"]
    assert plan.events_topic == settings["events_topic"]
    assert plan.managed_by == settings["deployment"]
    assert plan.jobs_collection == settings["jobs_collection"]
    assert plan.effects_collection == settings["effects_collection"]


@pytest.mark.parametrize(
    ("values", "variable", "fragment"),
    [
        ({"project": "acme-ml"}, "bucket", "required"),
        ({**MINIMAL, "regoin": "x"}, "regoin", "unknown variable"),
        ({**MINIMAL, "api_invokers": ["allUsers"]}, "api_invokers", "never public"),
        ({**MINIMAL, "api_invokers": ["allAuthenticatedUsers"]}, "api_invokers", "never public"),
        ({**MINIMAL, "api_invokers": ["ana@acme.example"]}, "api_invokers", "user:, group:"),
        ({**MINIMAL, "api_cancel_principals": ["user:ana@acme.example"]}, "api_cancel_principals", "plain e-mail"),
        ({**MINIMAL, "dead_letter_max_attempts": 3}, "dead_letter_max_attempts", "5 to 100"),
        ({**MINIMAL, "bucket_versioning": "yes"}, "bucket_versioning", "expected bool"),
        ({**MINIMAL, "lease_seconds": "600"}, "lease_seconds", "expected int"),
        ({**MINIMAL, "region": None}, "region", "null is not allowed"),
        ({**MINIMAL, "name_prefix": "Sftpilot"}, "name_prefix", "3-19 chars"),
        ({**MINIMAL, "managed_by": "Team A"}, "managed_by", "label value"),
        ({**MINIMAL, "default_adapter_size": 3}, "default_adapter_size", "1, 2, 4, 8, 16"),
        ({**MINIMAL, "tuning_location": "europe-west12"}, "tuning_location", "us-central1, us-east1"),
        ({**MINIMAL, "bucket": "b" * 64}, "bucket", "3-63"),
        ({**MINIMAL, "bucket": "b" * 60}, "source_bucket", "shorten bucket or set source_bucket"),
        ({**MINIMAL, "bucket": "b-data", "source_bucket": "s" * 64}, "source_bucket", "3-63"),
    ],
)
def test_bad_variables_are_refused_by_name(values: dict[str, object], variable: str, fragment: str) -> None:
    with pytest.raises(DeployVarsError) as caught:
        DeploymentVars.from_mapping(values, "my.tfvars")
    assert caught.value.variable == variable
    assert fragment in caught.value.problem
    assert str(caught.value).startswith("my.tfvars")


def test_an_unreadable_variables_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DeployVarsError, match="cannot read the variables file"):
        load_vars(tmp_path / "missing.tfvars")


def test_settings_errors_surface_as_variable_errors() -> None:
    plan = DeploymentVars(**MINIMAL, reports_prefix="datasets/x/")
    with pytest.raises(DeployVarsError) as caught:
        config.check_settings(plan)
    assert caught.value.variable == "SFTPILOT_REPORTS_PREFIX"


# --- the functions' environment ------------------------------------------------------------------


def test_every_settings_field_has_a_decided_source_in_gcp() -> None:
    assert set(config.SETTINGS_SOURCES) == {f.name for f in dataclasses.fields(Settings)}


@pytest.mark.parametrize("vars_name", ["example", "variant"])
def test_function_env_builds_the_settings_the_variables_describe(vars_name: str, variant_vars) -> None:
    plan = load_vars(EXAMPLE_VARS if vars_name == "example" else variant_vars)
    env = config.function_env(plan)
    known = {f"SFTPILOT_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    assert set(env) <= known
    assert {"SFTPILOT_PROJECT", "SFTPILOT_BUCKET"} <= set(env)
    assert "SFTPILOT_TUNING_BASE_URL" not in env  # real Vertex AI in GCP
    assert "SFTPILOT_API_TOKEN" not in env  # OIDC only in GCP
    settings = Settings.from_env(env)
    assert settings.project == plan.project
    assert settings.bucket == plan.bucket
    assert settings.deployment == plan.managed_by
    assert settings.events_topic_path == f"projects/{plan.project}/topics/{plan.events_topic}"
    assert settings.firestore_database == plan.firestore_database
    assert settings.api_cancel_principals == plan.api_cancel_principals
    assert settings.api_audience == (plan.api_audience or plan.api_url)
    assert settings.defaults_file == "/workspace/sftpilot-defaults.yaml"


def test_unset_tunables_leave_the_settings_defaults_in_force() -> None:
    env = config.function_env(DeploymentVars(**MINIMAL))
    defaults = Settings(project="p", bucket="bucket")
    settings = Settings.from_env(env)
    for name in ("tuning_location", "lease_seconds", "stall_after_seconds", "poll_concurrency", "log_level"):
        assert f"SFTPILOT_{name.upper()}" not in env
        assert getattr(settings, name) == getattr(defaults, name)


def test_tunables_that_are_set_reach_the_settings(variant_vars) -> None:
    settings = Settings.from_env(config.function_env(load_vars(variant_vars)))
    assert (settings.tuning_location, settings.lease_seconds, settings.stall_after_seconds) == (
        "europe-west4",
        900,
        7200,
    )
    assert (settings.poll_concurrency, settings.max_reported_errors, settings.log_level) == (4, 20, "DEBUG")


# --- the tuning defaults ----------------------------------------------------------------------------


def test_tuning_defaults_are_accepted_by_the_intake_and_carry_the_cleanup_policy(variant_vars) -> None:
    plan = load_vars(variant_vars)
    text = config.tuning_defaults_yaml(plan)
    config_obj = resolve_config(
        FakeBlobStore(), plan.bucket, "in/team/data.jsonl", "in/", defaults=yaml.safe_load(text)
    )
    assert config_obj.base_model == "gemini-2.5-flash-lite"
    assert (config_obj.epochs, config_obj.adapter_size, config_obj.learning_rate_multiplier) == (5, 8, 0.5)
    assert config_obj.labels == {"team": "ml", "cost-center": "cc42"}
    assert config_obj.smoke_test.enabled is False
    assert (config_obj.cleanup.enabled, config_obj.cleanup.keep_last) == (True, 3)
    assert (config_obj.cleanup.dry_run, config_obj.cleanup.on_failure) == (True, True)


def test_tuning_defaults_the_intake_would_reject_fail_at_deploy_time() -> None:
    plan = DeploymentVars(**MINIMAL, default_epochs=1000)
    with pytest.raises(DeployVarsError, match="tuning defaults are invalid"):
        config.tuning_defaults_yaml(plan)


# --- roles.json ---------------------------------------------------------------------------------

# Roles that may appear at all, and the ones allowed on the whole project (everything else must
# be granted on one bucket, topic, subscription or service).
ALLOWED_ROLES = {
    "roles/storage.objectViewer",
    "roles/storage.objectUser",
    "roles/datastore.user",
    "roles/pubsub.publisher",
    "roles/pubsub.subscriber",
    "roles/aiplatform.user",
    "roles/eventarc.eventReceiver",
    "roles/run.invoker",
    "roles/run.builder",
    "roles/iam.serviceAccountTokenCreator",
    "roles/iam.serviceAccountUser",  # only on the listed custom tuning service accounts
}
PROJECT_WIDE = {
    ("upload", "roles/aiplatform.user"),
    ("poller", "roles/aiplatform.user"),
    ("completion", "roles/aiplatform.user"),
    ("api", "roles/aiplatform.user"),
    ("trigger", "roles/eventarc.eventReceiver"),
    ("build", "roles/run.builder"),
    ("gcs_agent", "roles/pubsub.publisher"),
    # Push authentication in projects created before April 2021 (issue 14.3).
    ("pubsub_agent", "roles/iam.serviceAccountTokenCreator"),
}


def test_role_table_is_least_privilege() -> None:
    table = config.roles_table()
    seen = set()
    for grant in table["grants"]:
        key = (grant["principal"], grant["role"], grant["on"])
        assert key not in seen, f"duplicate grant {key}"
        seen.add(key)
        assert grant["principal"] in table["principals"]
        assert grant["on"] in table["resources"]
        assert grant["condition"] is None or grant["condition"] in table["conditions"]
        assert len(grant["reason"]) > 20, f"{key} needs a reason"
        assert grant["role"] in ALLOWED_ROLES, f"{key}: {grant['role']} is not an allowed role"
        if grant["on"] == "project" and grant["condition"] is None:
            assert (grant["principal"], grant["role"]) in PROJECT_WIDE, f"{key} must be narrower than the project"
    # Firestore access is always limited to the deployment's database, writes to the reports prefix.
    for grant in table["grants"]:
        if grant["role"] == "roles/datastore.user":
            assert grant["condition"] == "firestore_database"
        if grant["role"] == "roles/storage.objectUser":
            assert grant["condition"] == "reports_prefix"


def test_the_api_is_the_only_service_open_to_configured_members() -> None:
    table = config.roles_table()
    invoker_targets = {(g["principal"], g["on"]) for g in table["grants"] if g["role"] == "roles/run.invoker"}
    assert invoker_targets == {
        ("trigger", "function:upload"),
        ("trigger", "function:completion"),
        ("scheduler", "function:poller"),
        ("api_invokers", "function:api"),
    }


def test_grants_expand_members_and_conditions(variant_vars) -> None:
    plan = load_vars(variant_vars)
    grants = config.grants(plan, PROJECT_NUMBER)
    members = {g.member for g in grants}
    assert "user:ana@acme.example" in members
    assert not any("gcp-sa-vertex-tune" in m for m in members)  # grant_tuning_agent_bucket_read = false
    assert not any(m.lower() in ("allusers", "allauthenticatedusers") for m in members)
    reports = [g for g in grants if g.condition_title == "sftpilot-reports-only"]
    assert reports
    assert all(
        g.condition_expression == 'resource.name.startsWith("projects/_/buckets/acme-dev-data/objects/out/reports/")'
        for g in reports
    )
    database = [g for g in grants if g.role == "roles/datastore.user"]
    assert {g.condition_expression for g in database} == {'resource.name == "projects/acme-ml-dev/databases/(default)"'}


# --- generated files --------------------------------------------------------------------------------


def test_declared_indexes_are_exactly_the_ones_the_job_store_queries_need() -> None:
    declared = {tuple(index) for index in config.composite_indexes()}
    required = {tuple(tuple(field) for field in index) for index in REQUIRED_COMPOSITE_INDEXES}
    assert required - declared == set(), "queries without a declared index: run python -m deploy.gcp.generate --write"
    assert declared - required == set(), "stale declared indexes: run python -m deploy.gcp.generate --write"
    data = json.loads((GCP / "firestore_indexes.json").read_text())
    assert all(order in ("ASCENDING", "DESCENDING") for index in data["indexes"] for _, order in index)


def test_generated_files_and_readme_tables_are_up_to_date(capsys) -> None:
    assert generate_main(["--check"]) == 0, capsys.readouterr().err


def test_stale_readme_is_detected(tmp_path, capsys) -> None:
    readme = tmp_path / "README.md"
    text = (GCP / "README.md").read_text().replace("roles/run.builder", "roles/editor")
    readme.write_text(text)
    assert generate_main(["--check", "--readme", str(readme)]) == 1
    assert "stale" in capsys.readouterr().err


@pytest.mark.parametrize("region", ["europe-west10", "europe-west12", "me-central2"])
def test_two_digit_regions_are_accepted_for_the_functions(region: str) -> None:
    assert DeploymentVars.from_mapping({**MINIMAL, "region": region}).region == region


@pytest.mark.parametrize("region", TUNING_REGIONS)
def test_every_documented_tuning_region_is_accepted(region: str) -> None:
    assert DeploymentVars.from_mapping({**MINIMAL, "tuning_location": region}).tuning_location == region


def test_a_bucket_leaving_room_for_the_sources_suffix_is_accepted() -> None:
    plan = DeploymentVars.from_mapping({**MINIMAL, "bucket": "b" * 55})
    assert len(plan.effective_source_bucket) == 63
