# Every grant comes from local.grants (roles.json); nothing else in this module grants a role.
# One resource per kind of target; the `on` field of a grant picks the resource.

resource "google_project_iam_member" "grants" {
  for_each = { for k, g in local.grants : k => g if g.on == "project" }
  project  = var.project
  role     = each.value.role
  member   = each.value.member

  dynamic "condition" {
    for_each = each.value.condition == null ? [] : [each.value.condition]
    content {
      title      = condition.value.title
      expression = condition.value.expression
    }
  }

  depends_on = [google_service_account.sa, data.google_storage_project_service_account.gcs_agent]
}

resource "google_storage_bucket_iam_member" "datasets" {
  for_each = { for k, g in local.grants : k => g if g.on == "datasets_bucket" && g.principal != "tuning_agent" }
  bucket   = google_storage_bucket.datasets.name
  role     = each.value.role
  member   = each.value.member

  dynamic "condition" {
    for_each = each.value.condition == null ? [] : [each.value.condition]
    content {
      title      = condition.value.title
      expression = condition.value.expression
    }
  }

  depends_on = [google_service_account.sa]
}

resource "google_storage_bucket_iam_member" "sources" {
  for_each   = { for k, g in local.grants : k => g if g.on == "sources_bucket" }
  bucket     = google_storage_bucket.sources.name
  role       = each.value.role
  member     = each.value.member
  depends_on = [google_service_account.sa]
}

resource "google_pubsub_topic_iam_member" "events" {
  for_each   = { for k, g in local.grants : k => g if g.on == "events_topic" }
  project    = var.project
  topic      = google_pubsub_topic.events.name
  role       = each.value.role
  member     = each.value.member
  depends_on = [google_service_account.sa]
}

# roles on the custom tuning service accounts (tuning_service_accounts); the tuning agent's own
# grants there are part of the second step below, like its bucket grant.
resource "google_service_account_iam_member" "tuning_service_accounts" {
  for_each           = { for k, g in local.grants : k => g if startswith(g.on, "service_account:") && g.principal != "tuning_agent" }
  service_account_id = "projects/${var.project}/serviceAccounts/${trimprefix(each.value.on, "service_account:")}"
  role               = each.value.role
  member             = each.value.member
  depends_on         = [google_service_account.sa]
}

resource "google_pubsub_topic_iam_member" "dead_letter" {
  for_each = { for k, g in local.grants : k => g if g.on == "dead_letter_topic" }
  project  = var.project
  topic    = google_pubsub_topic.dead_letter.name
  role     = each.value.role
  member   = each.value.member
}

# roles/run.invoker on the Cloud Run service behind a 2nd gen function (same name as the function).
resource "google_cloud_run_service_iam_member" "invokers" {
  for_each = { for k, g in local.grants : k => g if startswith(g.on, "function:") }
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.fn[trimprefix(each.value.on, "function:")].name
  role     = each.value.role
  member   = each.value.member
}

# Eventarc creates each trigger's Pub/Sub subscription itself, and neither the functions API nor
# the Terraform provider can give it a dead-letter policy. The same script deploy.sh uses attaches
# it to the upload and the completion trigger after the function exists (needs gcloud where
# Terraform runs).
locals {
  dead_lettered = ["upload", "completion"]
  subscription_grants = {
    for key in local.dead_lettered :
    key => [for g in values(local.grants) : g if g.on == "${key}_trigger_subscription"]
  }
}

resource "terraform_data" "dead_letter" {
  for_each = toset(local.dead_lettered)
  triggers_replace = [
    google_cloudfunctions2_function.fn[each.key].event_trigger[0].trigger,
    google_pubsub_topic.dead_letter.id,
    var.dead_letter_max_attempts,
    local.subscription_grants[each.key],
  ]

  provisioner "local-exec" {
    interpreter = ["bash", "-c"]
    command = join(" ", concat(
      [
        "bash", "${path.module}/../attach-dead-letter.sh",
        "--project", var.project,
        "--region", var.region,
        "--function", google_cloudfunctions2_function.fn[each.key].name,
        "--dead-letter-topic", google_pubsub_topic.dead_letter.id,
        "--max-attempts", tostring(var.dead_letter_max_attempts),
      ],
      flatten([for g in local.subscription_grants[each.key] : ["--grant", "${g.member}=${g.role}"]]),
    ))
  }

  depends_on = [google_pubsub_topic_iam_member.dead_letter]
}

# The Vertex AI tuning service agent exists only after the project's first tuning job, and a
# binding naming it fails until then: the second step (the script deploy.sh runs too) grants what
# it can and never fails on a missing agent. Rerun `terraform apply -replace=terraform_data.tuning_agent`
# (or the script) after the first tuning job.
locals {
  tuning_agent_grants = [for g in values(local.grants) : g if g.principal == "tuning_agent"]
}

resource "terraform_data" "tuning_agent" {
  triggers_replace = [var.bucket, local.tuning_agent_grants]

  provisioner "local-exec" {
    interpreter = ["bash", "-c"]
    command = join(" ", concat(
      ["bash", "${path.module}/../grant-tuning-agent.sh", "--project", var.project, "--bucket", var.bucket],
      flatten([for g in local.tuning_agent_grants : g.on == "datasets_bucket" ? ["--grant", "${g.member}=${g.role}"] : ["--sa-grant", "${trimprefix(g.on, "service_account:")},${g.member}=${g.role}"]]),
    ))
  }

  depends_on = [google_storage_bucket.datasets, google_project_service.apis]
}

# The upload trigger's dead-letter step used to be a single resource.
moved {
  from = terraform_data.upload_dead_letter
  to   = terraform_data.dead_letter["upload"]
}
