# Everything derived from the variables. This file references only var.*, local.* and the two
# tables beside the module (roles.json, firestore_indexes.json) plus local.project_number, so a
# test can evaluate it with `terraform console` (no providers needed) and check it is identical
# to what deploy/gcp/config.py derives for deploy.sh. Keep resources and data sources out of it.

locals {
  roles_table   = jsondecode(file("${path.module}/../roles.json"))
  indexes_table = jsondecode(file("${path.module}/../firestore_indexes.json"))

  runtime                    = "python312"
  defaults_file_name         = "sftpilot-defaults.yaml"
  function_source_root       = "/workspace" # where the Python buildpack puts the source (also the cwd)
  dead_letter_hold_retention = "604800s"    # dead letters wait 7 days
  scheduler_attempt_deadline = "320s"       # the poller's timeout (300 s) plus a margin

  apis = toset([
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
  ])

  dead_letter_topic  = var.dead_letter_topic != "" ? var.dead_letter_topic : "${var.name_prefix}-uploads-dead-letter"
  source_bucket      = var.source_bucket != "" ? var.source_bucket : "${var.bucket}-sources"
  firestore_location = var.firestore_location != "" ? var.firestore_location : var.region
  api_url            = "https://${var.region}-${var.project}.cloudfunctions.net/${var.name_prefix}-jobs-api"
  source_dir         = var.source_dir != "" ? var.source_dir : "${path.module}/../build/source"

  service_accounts = {
    for key in ["upload", "poller", "completion", "api", "trigger", "scheduler", "build"] :
    key => "${var.name_prefix}-${key}"
  }

  # The four functions. service_account names the runtime identity (a key of service_accounts).
  functions = {
    upload = {
      name            = "${var.name_prefix}-upload"
      entry_point     = "on_dataset_uploaded"
      trigger         = "storage"
      event_type      = "google.cloud.storage.object.v1.finalized"
      retry           = true
      memory          = "512Mi"
      timeout_seconds = 540
      max_instances   = 20
      ingress         = "ALLOW_INTERNAL_ONLY"
      service_account = "upload"
    }
    poller = {
      name            = "${var.name_prefix}-poller"
      entry_point     = "poll_tuning_jobs"
      trigger         = "scheduler"
      event_type      = null
      retry           = false
      memory          = "512Mi"
      timeout_seconds = 300
      max_instances   = 1
      ingress         = "ALLOW_INTERNAL_ONLY"
      service_account = "poller"
    }
    completion = {
      name            = "${var.name_prefix}-completion"
      entry_point     = "on_tuning_completed"
      trigger         = "topic"
      event_type      = "google.cloud.pubsub.topic.v1.messagePublished"
      retry           = true
      memory          = "1Gi"
      timeout_seconds = 540
      max_instances   = 10
      ingress         = "ALLOW_INTERNAL_ONLY"
      service_account = "completion"
    }
    api = {
      name            = "${var.name_prefix}-jobs-api"
      entry_point     = "jobs_api"
      trigger         = "http"
      event_type      = null
      retry           = false
      memory          = "512Mi"
      timeout_seconds = 60
      max_instances   = 10
      ingress         = "ALLOW_ALL"
      service_account = "api"
    }
  }

  # Settings-backed tunables: unset (null) leaves the sftpilot default in force.
  optional_settings = {
    SFTPILOT_TUNING_LOCATION       = var.tuning_location
    SFTPILOT_MAX_EVENT_AGE_SECONDS = var.max_event_age_seconds == null ? null : tostring(var.max_event_age_seconds)
    SFTPILOT_LEASE_SECONDS         = var.lease_seconds == null ? null : tostring(var.lease_seconds)
    SFTPILOT_STALL_AFTER_SECONDS   = var.stall_after_seconds == null ? null : tostring(var.stall_after_seconds)
    SFTPILOT_POLL_CONCURRENCY      = var.poll_concurrency == null ? null : tostring(var.poll_concurrency)
    SFTPILOT_MAX_REPORTED_ERRORS   = var.max_reported_errors == null ? null : tostring(var.max_reported_errors)
    SFTPILOT_LOG_LEVEL             = var.log_level
  }

  # The environment of every function, parsed by shared.settings.Settings.from_env.
  function_env = merge(
    {
      SFTPILOT_PROJECT            = var.project
      SFTPILOT_BUCKET             = var.bucket
      SFTPILOT_DATASETS_PREFIX    = var.datasets_prefix
      SFTPILOT_REPORTS_PREFIX     = var.reports_prefix
      SFTPILOT_EVENTS_TOPIC       = "projects/${var.project}/topics/${var.events_topic}"
      SFTPILOT_DEPLOYMENT         = var.managed_by
      SFTPILOT_FIRESTORE_DATABASE = var.firestore_database
      SFTPILOT_JOBS_COLLECTION    = var.jobs_collection
      SFTPILOT_EFFECTS_COLLECTION = var.effects_collection
      SFTPILOT_DEFAULTS_FILE      = "${local.function_source_root}/${local.defaults_file_name}"
      SFTPILOT_API_AUDIENCE       = var.api_audience != "" ? var.api_audience : local.api_url
    },
    { for k, v in { SFTPILOT_API_CANCEL_PRINCIPALS = join(",", var.api_cancel_principals) } : k => v if v != "" },
    { for k, v in { SFTPILOT_TUNING_SERVICE_ACCOUNTS = join(",", var.tuning_service_accounts) } : k => v if v != "" },
    { for k, v in local.optional_settings : k => v if v != null },
  )

  # The deployment's tuning defaults (tuning.yaml schema), packaged as sftpilot-defaults.yaml.
  tuning_defaults = merge(
    { base_model = var.default_base_model },
    {
      for k, v in {
        epochs                   = var.default_epochs
        adapter_size             = var.default_adapter_size
        learning_rate_multiplier = var.default_learning_rate_multiplier
      } : k => v if v != null
    },
    { for k, v in { labels = var.default_labels } : k => v if length(v) > 0 },
    {
      smoke_test = { enabled = var.smoke_test_enabled }
      cleanup = {
        enabled    = var.cleanup_enabled
        keep_last  = var.cleanup_keep_last
        dry_run    = var.cleanup_dry_run
        on_failure = var.cleanup_on_failure
      }
    },
  )

  # IAM: who each principal of roles.json is, and the conditions a grant may carry.
  members = merge(
    {
      for key, id in local.service_accounts :
      key => ["serviceAccount:${id}@${var.project}.iam.gserviceaccount.com"]
    },
    {
      gcs_agent    = ["serviceAccount:service-${local.project_number}@gs-project-accounts.iam.gserviceaccount.com"]
      pubsub_agent = ["serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"]
      tuning_agent = var.grant_tuning_agent_bucket_read ? ["serviceAccount:service-${local.project_number}@gcp-sa-vertex-tune.iam.gserviceaccount.com"] : []
      api_invokers = var.api_invokers
    },
  )

  conditions = {
    reports_prefix = {
      title      = "sftpilot-reports-only"
      expression = "resource.name.startsWith(\"projects/_/buckets/${var.bucket}/objects/${var.reports_prefix}\")"
    }
    firestore_database = {
      title      = "sftpilot-database-only"
      expression = "resource.name == \"projects/${var.project}/databases/${var.firestore_database}\""
    }
  }

  # Every grant of roles.json, one entry per member, keyed "principal|role|on|member".
  # "tuning_service_accounts" is one grant per listed account, on "service_account:EMAIL".
  grants = merge(flatten([
    for g in local.roles_table.grants : [
      for on in(g.on == "tuning_service_accounts" ? [for sa in var.tuning_service_accounts : "service_account:${sa}"] : [g.on]) : {
        for m in local.members[g.principal] :
        "${g.principal}|${g.role}|${on}|${m}" => {
          principal = g.principal
          member    = m
          role      = g.role
          on        = on
          condition = g.condition == null ? null : local.conditions[g.condition]
        }
      }
    ]
  ])...)

  # Composite indexes of the jobs collection, keyed like "status_asc__created_at_desc".
  job_indexes = {
    for ix in local.indexes_table.indexes :
    join("__", [for f in ix : "${f[0]}_${f[1] == "ASCENDING" ? "asc" : "desc"}"]) => [
      for f in ix : { field_path = f[0], order = f[1] }
    ]
  }

  # Everything above in one value (the test compares it with `python -m deploy.gcp.config plan-json`).
  plan = {
    apis             = local.apis
    function_env     = local.function_env
    tuning_defaults  = local.tuning_defaults
    functions        = local.functions
    service_accounts = local.service_accounts
    grants           = local.grants
    job_indexes      = local.job_indexes
    names = {
      dead_letter_topic             = local.dead_letter_topic
      dead_letter_hold_subscription = "${local.dead_letter_topic}-hold"
      source_bucket                 = local.source_bucket
      firestore_location            = local.firestore_location
      scheduler_job                 = "${var.name_prefix}-poll"
      api_url                       = local.api_url
    }
    constants = {
      runtime                    = local.runtime
      defaults_file              = local.function_env.SFTPILOT_DEFAULTS_FILE
      dead_letter_hold_retention = local.dead_letter_hold_retention
      scheduler_attempt_deadline = local.scheduler_attempt_deadline
    }
  }
}
