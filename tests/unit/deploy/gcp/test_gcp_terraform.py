"""The Terraform module: formatting, structure (python-hcl2) and its derived plan (terraform console)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess

import pytest
from gcp_testing import EXAMPLE_VARS, PROJECT_NUMBER, TF, load_terraform_module, strings_in, unquote

from deploy.gcp import config
from deploy.gcp.config import load_vars
from deploy.gcp.package import entry_point_signatures
from shared.adapters.firestore import REQUIRED_COMPOSITE_INDEXES
from shared.settings import Settings

IAM_RESOURCE = re.compile(r"^google_.*_iam_(member|binding|policy)$")


@pytest.fixture(scope="module")
def module() -> dict[str, dict[str, object]]:
    return load_terraform_module()


def resource(module, address: str) -> dict:
    assert address in module["resource"], f"{address} is missing from the Terraform module"
    return module["resource"][address]


def block(body: dict, name: str) -> dict:
    (inner,) = body[name]
    return inner


# --- formatting ------------------------------------------------------------------------------------


def test_terraform_is_formatted(terraform_bin: str) -> None:
    proc = subprocess.run(
        [terraform_bin, "fmt", "-check", "-recursive", "-diff", str(TF)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"terraform fmt -check failed (run terraform fmt -recursive):\n{proc.stdout}"


# --- structure (python-hcl2) ------------------------------------------------------------------------


def test_functions_are_second_gen_python_312_with_the_shared_environment(module) -> None:
    fn = resource(module, "google_cloudfunctions2_function.fn")
    assert fn["for_each"] == "${local.functions}"
    build = block(fn, "build_config")
    assert build["entry_point"] == "${each.value.entry_point}"
    assert build["runtime"] == "${local.runtime}"
    service = block(fn, "service_config")
    assert service["environment_variables"] == "${local.function_env}"
    assert service["service_account_email"] == "${google_service_account.sa[each.value.service_account].email}"
    assert service["ingress_settings"] == "${each.value.ingress}"
    trigger = block(fn, "dynamic")['"event_trigger"']
    content = block(trigger, "content")
    assert "RETRY_POLICY_RETRY" in content["retry_policy"]
    assert content["service_account_email"] == '${google_service_account.sa["trigger"].email}'


def test_buckets_have_uniform_access_and_no_public_access(module) -> None:
    for address in ("google_storage_bucket.datasets", "google_storage_bucket.sources"):
        bucket = resource(module, address)
        assert bucket["uniform_bucket_level_access"] is True, address
        assert unquote(bucket["public_access_prevention"]) == "enforced", address
    assert (
        block(resource(module, "google_storage_bucket.datasets"), "versioning")["enabled"] == "${var.bucket_versioning}"
    )


def test_no_binding_or_string_makes_anything_public(module) -> None:
    for kind in ("resource", "data", "locals", "output"):
        for text in strings_in(module.get(kind, {})):
            assert "allusers" not in text.lower() and "allauthenticatedusers" not in text.lower(), text


def test_roles_only_come_from_the_role_table(module) -> None:
    for kind in ("resource", "data", "locals", "output"):
        for text in strings_in(module.get(kind, {})):
            assert "roles/" not in text, f"literal role in the Terraform: {text}"


def test_every_iam_resource_is_additive_and_driven_by_local_grants(module) -> None:
    handled: set[str] = set()
    for address, body in module["resource"].items():
        rtype = address.split(".")[0]
        if not IAM_RESOURCE.match(rtype):
            continue
        assert rtype.endswith("_iam_member"), f"{address}: authoritative IAM resources would drop other grants"
        assert body["role"] == "${each.value.role}", address
        assert body["member"] == "${each.value.member}", address
        assert "local.grants" in body["for_each"], address
        targets = re.findall(r'g\.on == \\?"([^"\\]+)', body["for_each"])
        if 'startswith(g.on, "function:")' in body["for_each"]:
            targets.append("function:*")
        if 'startswith(g.on, "service_account:")' in body["for_each"]:
            targets.append("tuning_service_accounts")
        assert targets, f"{address} must filter local.grants by target"
        handled.update(targets)
    dead_letter = resource(module, "terraform_data.dead_letter")
    assert "subscription_grants" in str(dead_letter)
    handled.update({"upload_trigger_subscription", "completion_trigger_subscription"})
    step = resource(module, "terraform_data.tuning_agent")
    assert "--sa-grant" in str(step) and "--grant" in str(step)
    for grant in config.roles_table()["grants"]:
        target = "function:*" if grant["on"].startswith("function:") else grant["on"]
        assert target in handled, f"roles.json grants on {grant['on']!r} but no Terraform resource applies it"


def test_indexes_and_scheduler_are_declared(module) -> None:
    index = resource(module, "google_firestore_index.jobs")
    assert index["for_each"] == "${local.job_indexes}"
    assert index["collection"] == "${var.jobs_collection}"
    assert unquote(index["query_scope"]) == "COLLECTION"
    job = resource(module, "google_cloud_scheduler_job.poll")
    target = block(job, "http_target")
    assert unquote(target["http_method"]) == "POST"
    assert block(target, "oidc_token")["service_account_email"] == '${google_service_account.sa["scheduler"].email}'


def test_config_tf_is_evaluable_without_providers() -> None:
    text = (TF / "config.tf").read_text()
    assert not re.search(r"^\s*(resource|data|module|provider)\s", text, flags=re.MULTILINE)
    assert not re.search(r"\b(data|google_[a-z0-9_]+)\.[a-z]", text.replace("local.", "")), (
        "config.tf must only use var.*, local.* and the JSON tables (the console test evaluates it alone)"
    )


# --- the derived plan (terraform console) -------------------------------------------------------------


@pytest.mark.parametrize("which", ["example", "variant"])
def test_terraform_and_deploy_sh_derive_the_same_plan(which: str, variant_vars, evaluate_config) -> None:
    vars_file = EXAMPLE_VARS if which == "example" else variant_vars
    terraform_plan = evaluate_config("local.plan", vars_file)
    python_plan = config.plan_json(load_vars(vars_file), PROJECT_NUMBER)
    for key in python_plan:
        assert terraform_plan[key] == python_plan[key], f"config.tf and config.py disagree on {key}"
    assert set(terraform_plan) == set(python_plan)


def test_terraform_entry_points_exist_in_functions_main(evaluate_config) -> None:
    functions = evaluate_config("local.functions", EXAMPLE_VARS)
    provided = entry_point_signatures()
    for key, fn in functions.items():
        assert fn["entry_point"] in provided, f"functions/main.py does not provide {fn['entry_point']} ({key})"
        expected = "http" if fn["trigger"] in ("http", "scheduler") else "cloud_event"
        assert provided[fn["entry_point"]] == expected, f"{fn['entry_point']} must be @functions_framework.{expected}"
    assert {fn["event_type"] for fn in functions.values()} == {
        None,
        "google.cloud.storage.object.v1.finalized",
        "google.cloud.pubsub.topic.v1.messagePublished",
    }
    assert all(fn["retry"] for fn in functions.values() if fn["event_type"])


def test_terraform_env_satisfies_the_settings_object(evaluate_config) -> None:
    env = evaluate_config("local.function_env", EXAMPLE_VARS)
    required = {
        f.name
        for f in dataclasses.fields(Settings)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert required == {"project", "bucket"}
    assert "SFTPILOT_PROJECT" in env or "GOOGLE_CLOUD_PROJECT" in env
    assert "SFTPILOT_BUCKET" in env
    assert not env.get("SFTPILOT_TUNING_BASE_URL")
    Settings.from_env(env)


def test_terraform_declares_an_index_for_every_query(evaluate_config) -> None:
    indexes = evaluate_config("local.job_indexes", EXAMPLE_VARS)
    declared = {tuple((f["field_path"], f["order"]) for f in fields) for fields in indexes.values()}
    required = {tuple(tuple(field) for field in index) for index in REQUIRED_COMPOSITE_INDEXES}
    assert required <= declared, f"queries without a Terraform index: {sorted(required - declared)}"


def test_terraform_grants_stay_within_the_role_table(variant_vars, evaluate_config) -> None:
    table = {(g["principal"], g["role"], g["on"]) for g in config.roles_table()["grants"]}
    for vars_file in (EXAMPLE_VARS, variant_vars):
        grants = evaluate_config("local.grants", vars_file)
        assert grants
        for grant in grants.values():
            on = "tuning_service_accounts" if grant["on"].startswith("service_account:") else grant["on"]
            assert (grant["principal"], grant["role"], on) in table
            assert grant["member"].lower() not in ("allusers", "allauthenticatedusers")


@pytest.mark.parametrize(
    ("invokers", "accepted"),
    [
        ('["group:ml@acme.example", "serviceAccount:ci@p.iam.gserviceaccount.com"]', True),
        ('["allUsers"]', False),
        ('["allAuthenticatedUsers"]', False),
        ('["ana@acme.example"]', False),
    ],
)
def test_terraform_refuses_public_api_invokers(invokers: str, accepted: bool, evaluate_config) -> None:
    result = evaluate_config.run("var.api_invokers", EXAMPLE_VARS, [f"-var=api_invokers={invokers}"])
    message = " ".join(result.errors.replace("│", " ").split())
    refused = "allUsers and allAuthenticatedUsers are refused" in message
    assert refused is not accepted, result.errors
    if accepted:
        assert result.returncode == 0 and result.value == json.loads(invokers), result.errors


# --- issue 14: regions, bucket names, poller ingress ------------------------------------------------


@pytest.mark.parametrize(
    ("option", "accepted"),
    [
        ("-var=tuning_location=europe-west4", True),
        ("-var=tuning_location=us-east5", True),
        ("-var=tuning_location=europe-west12", False),
        ("-var=region=europe-west10", True),
        ("-var=bucket=" + "b" * 64, False),
    ],
)
def test_terraform_validates_regions_and_bucket_names(option: str, accepted: bool, evaluate_config) -> None:
    name = option.split("=", 2)[1].removeprefix("-var=")
    result = evaluate_config.run(f"var.{name}", EXAMPLE_VARS, [option])
    message = " ".join(result.errors.replace("│", " ").split())
    # terraform console reports a failed validation on stderr (its exit code stays 0).
    refused = "This was checked by the validation rule" in message and f"{name}:" in message
    assert refused is not accepted, message


def test_terraform_tuning_regions_are_the_documented_list(module) -> None:
    validation = block(module["variable"]["tuning_location"], "validation")
    listed = re.findall(r'"([a-z]+-[a-z]+[0-9]+)"', validation["condition"])
    assert set(listed) == set(config.TUNING_REGIONS)


def test_sources_bucket_name_length_is_checked_before_creating_it(module) -> None:
    lifecycle = block(resource(module, "google_storage_bucket.sources"), "lifecycle")
    precondition = block(lifecycle, "precondition")
    assert "length(local.source_bucket) <= 63" in precondition["condition"]


def test_the_poller_is_internal_only(evaluate_config) -> None:
    functions = evaluate_config("local.functions", EXAMPLE_VARS)
    assert functions["poller"]["ingress"] == "ALLOW_INTERNAL_ONLY"
    assert {f["ingress"] for k, f in functions.items() if k != "api"} == {"ALLOW_INTERNAL_ONLY"}


def test_terraform_grants_the_tuning_agent_only_through_the_second_step(module) -> None:
    datasets = resource(module, "google_storage_bucket_iam_member.datasets")
    assert (
        'g.principal != \\"tuning_agent\\"' in datasets["for_each"]
        or 'g.principal != "tuning_agent"' in datasets["for_each"]
    )
    step = resource(module, "terraform_data.tuning_agent")
    assert "grant-tuning-agent.sh" in str(step) and "tuning_agent_grants" in str(step)
