"""deploy.sh --dry-run: the gcloud path applies exactly the plan (entry points, env, grants, indexes)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from gcp_testing import EXAMPLE_VARS, GCP, REPO

from deploy.gcp import config
from deploy.gcp.config import load_vars
from deploy.gcp.package import entry_point_signatures
from shared.adapters.firestore import REQUIRED_COMPOSITE_INDEXES
from shared.settings import Settings

DEPLOY_SH = GCP / "deploy.sh"


@dataclass
class DryRun:
    returncode: int
    stdout: str
    stderr: str
    build_dir: Path
    gcloud_calls: list[str]

    @property
    def commands(self) -> list[list[str]]:
        return [shlex.split(line[2:]) for line in self.stdout.splitlines() if line.startswith("+ ")]


def dry_run(tmp_path: Path, vars_file: Path, *extra: str) -> DryRun:
    """Run deploy.sh --dry-run with a gcloud on PATH that records any call (there must be none)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    calls = tmp_path / "gcloud-calls.txt"
    gcloud = fake_bin / "gcloud"
    gcloud.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(calls))}\nexit 97\n')
    gcloud.chmod(0o755)
    build_dir = tmp_path / "build"
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(DEPLOY_SH), "--dry-run", "--vars", str(vars_file), "--build-dir", str(build_dir), *extra],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    recorded = calls.read_text().splitlines() if calls.exists() else []
    return DryRun(proc.returncode, proc.stdout, proc.stderr, build_dir, recorded)


def flag(command: list[str], name: str) -> str | None:
    values = flags(command, name)
    return values[-1] if values else None


def flags(command: list[str], name: str) -> list[str]:
    return [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> DryRun:
    result = dry_run(tmp_path_factory.mktemp("dry"), EXAMPLE_VARS)
    assert result.returncode == 0, result.stderr
    return result


def test_dry_run_prints_commands_and_never_calls_gcloud(example_run: DryRun) -> None:
    assert example_run.gcloud_calls == []
    assert len(example_run.commands) > 20
    assert all(command[0] == "gcloud" for command in example_run.commands)


def test_every_create_is_guarded_by_a_describe(example_run: DryRun) -> None:
    lines = example_run.stdout.splitlines()
    for number, line in enumerate(lines):
        command = shlex.split(line[2:]) if line.startswith("+ ") else []
        # `services identity create` is idempotent (it returns the existing agent).
        idempotent = command[1:3] in (["firestore", "indexes"], ["beta", "services"])
        creates = len(command) > 3 and "create" in command[:5] and not idempotent
        if creates and command[1:4] != ["scheduler", "jobs", "create"]:
            assert lines[number - 1].startswith("# if absent ("), f"unguarded create: {line}"


def test_functions_are_deployed_with_existing_entry_points_and_matching_triggers(example_run: DryRun) -> None:
    plan = load_vars(EXAMPLE_VARS)
    expected = {spec.name: spec for spec in config.functions(plan).values()}
    provided = entry_point_signatures()
    deploys = [c for c in example_run.commands if c[1:3] == ["functions", "deploy"]]
    assert {c[3] for c in deploys} == set(expected)
    for command in deploys:
        spec = expected[command[3]]
        entry_point = flag(command, "entry-point")
        assert entry_point == spec.entry_point
        assert entry_point in provided, f"functions/main.py does not provide {entry_point}"
        assert "--gen2" in command
        assert flag(command, "runtime") == "python312"
        assert flag(command, "service-account") == plan.service_account_email(spec.key)
        assert flag(command, "env-vars-file") == str(example_run.build_dir / "env.yaml")
        assert "--allow-unauthenticated" not in command
        if spec.trigger in ("http", "scheduler"):
            assert "--trigger-http" in command and "--no-allow-unauthenticated" in command
            assert provided[entry_point] == "http"
        else:
            assert provided[entry_point] == "cloud_event"
            assert "--retry" in command
            assert flag(command, "trigger-service-account") == plan.service_account_email("trigger")
        if spec.trigger == "storage":
            assert set(flags(command, "trigger-event-filters")) == {
                "type=google.cloud.storage.object.v1.finalized",
                f"bucket={plan.bucket}",
            }
        if spec.trigger == "topic":
            assert flag(command, "trigger-topic") == plan.events_topic


def test_functions_get_an_environment_the_settings_object_accepts(example_run: DryRun) -> None:
    env = yaml.safe_load((example_run.build_dir / "env.yaml").read_text())
    assert env == config.function_env(load_vars(EXAMPLE_VARS))
    assert "SFTPILOT_PROJECT" in env and "SFTPILOT_BUCKET" in env
    assert not env.get("SFTPILOT_TUNING_BASE_URL")
    settings = Settings.from_env(env)
    assert settings.project == "acme-ml-prod"
    defaults = example_run.build_dir / "source" / "sftpilot-defaults.yaml"
    assert yaml.safe_load(defaults.read_text()) == config.tuning_defaults(load_vars(EXAMPLE_VARS))


def _binding_target(command: list[str], plan: config.DeploymentVars) -> str:
    functions = {spec.name: key for key, spec in config.functions(plan).items()}
    resource = command[command.index("add-iam-policy-binding") + 1]
    match command[1:3]:
        case ["projects", _]:
            assert resource == plan.project
            return "project"
        case ["storage", "buckets"]:
            return {f"gs://{plan.bucket}": "datasets_bucket", f"gs://{plan.effective_source_bucket}": "sources_bucket"}[
                resource
            ]
        case ["pubsub", "topics"]:
            return {plan.events_topic: "events_topic", plan.effective_dead_letter_topic: "dead_letter_topic"}[resource]
        case ["run", "services"]:
            return f"function:{functions[resource]}"
        case ["pubsub", "subscriptions"]:
            key = {f"SUBSCRIPTION_OF_{plan.name_prefix}-{k}": k for k in ("upload", "completion")}[resource]
            return f"{key}_trigger_subscription"
        case ["iam", "service-accounts"]:
            assert resource in plan.tuning_service_accounts
            return f"service_account:{resource}"
    raise AssertionError(f"unexpected IAM command {command}")


def test_iam_bindings_are_exactly_the_role_table(example_run: DryRun) -> None:
    _assert_bindings_are_the_role_table(example_run, load_vars(EXAMPLE_VARS))


def test_custom_tuning_service_accounts_get_exactly_their_grants(tmp_path: Path, variant_vars: Path) -> None:
    result = dry_run(tmp_path, variant_vars)
    assert result.returncode == 0, result.stderr
    plan = load_vars(variant_vars)
    _assert_bindings_are_the_role_table(result, plan)
    on_account = {
        (flag(c, "member"), flag(c, "role"))
        for c in result.commands
        if c[1:4] == ["iam", "service-accounts", "add-iam-policy-binding"]
    }
    assert on_account == {
        (f"serviceAccount:{plan.service_account_email('upload')}", "roles/iam.serviceAccountUser"),
        (f"serviceAccount:{plan.service_account_email('poller')}", "roles/iam.serviceAccountUser"),
    }
    env = yaml.safe_load((result.build_dir / "env.yaml").read_text())
    assert env["SFTPILOT_TUNING_SERVICE_ACCOUNTS"] == "tuner@acme-ml-prod.iam.gserviceaccount.com"


def _assert_bindings_are_the_role_table(example_run: DryRun, plan: config.DeploymentVars) -> None:
    applied = set()
    for command in example_run.commands:
        if "add-iam-policy-binding" not in command:
            continue
        member, role = flag(command, "member"), flag(command, "role")
        assert member and member.lower() not in ("allusers", "allauthenticatedusers")
        condition = flag(command, "condition")
        expression = None
        if condition not in (None, "None"):
            expression = condition.split("expression=", 1)[1].rsplit(",title=", 1)[0]
        applied.add((member, role, _binding_target(command, plan), expression))
    expected = {
        (g.member, g.role, g.on, g.condition_expression) for g in config.grants(plan, config.PLACEHOLDER_PROJECT_NUMBER)
    }
    assert applied == expected


def test_every_required_index_is_created(example_run: DryRun) -> None:
    created = set()
    for command in example_run.commands:
        if command[1:5] == ["firestore", "indexes", "composite", "create"]:
            assert flag(command, "collection-group") == "jobs"
            assert flag(command, "database") == "sftpilot"
            fields = []
            for spec in flags(command, "field-config"):
                parts = dict(part.split("=", 1) for part in spec.split(","))
                fields.append((parts["field-path"], parts["order"].upper()))
            created.add(tuple(fields))
    required = {tuple(tuple(field) for field in index) for index in REQUIRED_COMPOSITE_INDEXES}
    assert required <= created, sorted(required - created)


def test_scheduler_calls_the_poller_with_oidc(example_run: DryRun) -> None:
    (command,) = [c for c in example_run.commands if c[1:4] == ["scheduler", "jobs", "create"]]
    plan = load_vars(EXAMPLE_VARS)
    assert flag(command, "oidc-service-account-email") == plan.service_account_email("scheduler")
    assert flag(command, "http-method") == "POST"
    assert flag(command, "oidc-token-audience") == flag(command, "uri")
    assert flag(command, "schedule") == "* * * * *"


def test_dead_letter_policy_is_attached_to_the_upload_and_completion_triggers(example_run: DryRun) -> None:
    updates = [c for c in example_run.commands if c[1:4] == ["pubsub", "subscriptions", "update"]]
    assert [c[4] for c in updates] == ["SUBSCRIPTION_OF_sftpilot-upload", "SUBSCRIPTION_OF_sftpilot-completion"]
    for command in updates:
        assert flag(command, "dead-letter-topic") == "projects/acme-ml-prod/topics/sftpilot-uploads-dead-letter"
        assert flag(command, "max-delivery-attempts") == "10"


def test_variant_variables_flow_through(tmp_path: Path, variant_vars: Path) -> None:
    result = dry_run(tmp_path, variant_vars)
    assert result.returncode == 0, result.stderr
    assert not any(c[1:4] == ["firestore", "databases", "create"] for c in result.commands)
    assert any("--versioning" in c for c in result.commands if c[1:4] == ["storage", "buckets", "update"])
    members = {flag(c, "member") for c in result.commands if "add-iam-policy-binding" in c}
    assert "user:ana@acme.example" in members
    assert not any("gcp-sa-vertex-tune" in (m or "") for m in members)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('project = "acme-ml-prod"\n', "variable 'bucket': required"),
        ('project = "acme-ml-prod"\nbucket = "b-data"\napi_invokers = ["allUsers"]\n', "never public"),
        ('project = "acme-ml-prod"\nbucket = "b-data"\nregion = var.other\n', "expected a literal value"),
    ],
)
def test_invalid_variables_stop_before_any_command(tmp_path: Path, content: str, message: str) -> None:
    vars_file = tmp_path / "bad.tfvars"
    vars_file.write_text(content)
    result = dry_run(tmp_path, vars_file)
    assert result.returncode == 2
    assert message in result.stderr
    assert "deploy.sh: error:" in result.stderr
    assert result.commands == []


def test_missing_variables_file_is_a_clear_error(tmp_path: Path) -> None:
    result = dry_run(tmp_path, tmp_path / "nope.tfvars")
    assert result.returncode == 2
    assert "terraform.tfvars.example" in result.stderr
    assert result.commands == []


def test_unknown_arguments_are_refused(tmp_path: Path) -> None:
    result = dry_run(tmp_path, EXAMPLE_VARS, "--yes")
    assert result.returncode == 2
    assert "unknown argument: --yes" in result.stderr


def test_shell_scripts_are_valid_bash() -> None:
    for script in ("deploy.sh", "attach-dead-letter.sh"):
        proc = subprocess.run(["bash", "-n", str(GCP / script)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert os.access(GCP / script, os.X_OK), f"{script} must be executable"
    assert (REPO / "deploy" / "gcp" / "deploy.sh").read_text().splitlines()[0] == "#!/usr/bin/env bash"


# --- issue 14: agents, ingress, regions ------------------------------------------------------------


def test_pubsub_agent_can_mint_push_tokens(example_run: DryRun) -> None:
    agent = f"serviceAccount:service-{config.PLACEHOLDER_PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    (command,) = [
        c
        for c in example_run.commands
        if c[1:3] == ["projects", "add-iam-policy-binding"] and flag(c, "member") == agent
    ]
    assert flag(command, "role") == "roles/iam.serviceAccountTokenCreator"


def test_only_the_jobs_api_is_reachable_from_outside(example_run: DryRun) -> None:
    deploys = {c[3]: flag(c, "ingress-settings") for c in example_run.commands if c[1:3] == ["functions", "deploy"]}
    assert deploys == {
        "sftpilot-upload": "internal-only",
        "sftpilot-poller": "internal-only",
        "sftpilot-completion": "internal-only",
        "sftpilot-jobs-api": "all",
    }


def test_an_unsupported_tuning_region_stops_the_deploy_with_the_list(tmp_path: Path) -> None:
    vars_file = tmp_path / "bad.tfvars"
    vars_file.write_text('project = "acme-ml-prod"\nbucket = "b-data"\ntuning_location = "europe-west12"\n')
    result = dry_run(tmp_path, vars_file)
    assert result.returncode == 2
    assert "does not offer Gemini supervised tuning" in result.stderr and "europe-west4" in result.stderr
    assert result.commands == []


def test_the_tuning_agent_is_granted_in_a_second_step_that_never_fails_on_a_missing_agent(
    example_run: DryRun, tmp_path: Path
) -> None:
    out = example_run.stdout
    second = out.index("# === second step: the Vertex AI tuning service agent")
    assert "gcp-sa-vertex-tune" not in out[: out.index("# === function source")]
    tail = [shlex.split(line[2:]) for line in out[second:].splitlines() if line.startswith("+ ")]
    assert tail[0][:5] == ["gcloud", "beta", "services", "identity", "create"]
    assert any("gcp-sa-vertex-tune" in (flag(c, "member") or "") for c in tail)
    # Run for real against a gcloud that answers like Google does before the first tuning job.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "gcloud").write_text(
        '#!/bin/sh\ncase "$*" in *gcp-sa-vertex-tune*) echo "ERROR: (gcloud) INVALID_ARGUMENT: Service account'
        ' service-1@gcp-sa-vertex-tune.iam.gserviceaccount.com does not exist." >&2; exit 1;; esac\nexit 0\n'
    )
    (fake_bin / "gcloud").chmod(0o755)
    member = "serviceAccount:service-1@gcp-sa-vertex-tune.iam.gserviceaccount.com"
    proc = subprocess.run(
        ["bash", str(GCP / "grant-tuning-agent.sh"), "--project", "p1", "--bucket", "b1",
         "--grant", f"{member}=roles/storage.objectViewer"],
        capture_output=True, text=True, env={**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"},
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "run this step again" in proc.stdout and "first tuning job" in proc.stdout


def test_indexes_are_built_one_at_a_time_tolerating_reruns_and_contention(example_run: DryRun) -> None:
    creates = [c for c in example_run.commands if c[1:5] == ["firestore", "indexes", "composite", "create"]]
    assert creates and not any("--async" in c for c in creates)  # each build is waited for
    lines = example_run.stdout.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("+ gcloud firestore indexes composite create"):
            assert "ALREADY_EXISTS is kept; 409/ABORTED/contention retried" in lines[number + 1]
