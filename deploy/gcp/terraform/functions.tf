# The four functions (2nd gen, Python 3.12), all built from the same source archive and all
# configured by the same environment (local.function_env, parsed by shared.settings.Settings).
resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions
  name     = each.value.name
  project  = var.project
  location = var.region
  labels   = { managed-by = var.managed_by }

  build_config {
    runtime         = local.runtime
    entry_point     = each.value.entry_point
    service_account = google_service_account.sa["build"].id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.sa[each.value.service_account].email
    environment_variables          = local.function_env
    available_memory               = each.value.memory
    timeout_seconds                = each.value.timeout_seconds
    max_instance_count             = each.value.max_instances
    ingress_settings               = each.value.ingress
    all_traffic_on_latest_revision = true
  }

  # Storage: finalize events of the dataset bucket. Topic: messages of the events topic.
  # Both retry failed deliveries (the handlers are idempotent; see the README).
  dynamic "event_trigger" {
    for_each = each.value.event_type == null ? [] : [each.value]
    content {
      trigger_region        = var.region
      event_type            = event_trigger.value.event_type
      retry_policy          = event_trigger.value.retry ? "RETRY_POLICY_RETRY" : "RETRY_POLICY_DO_NOT_RETRY"
      service_account_email = google_service_account.sa["trigger"].email
      pubsub_topic          = event_trigger.value.trigger == "topic" ? google_pubsub_topic.events.id : null

      dynamic "event_filters" {
        for_each = event_trigger.value.trigger == "storage" ? [google_storage_bucket.datasets.name] : []
        content {
          attribute = "bucket"
          value     = event_filters.value
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.grants,
    google_storage_bucket_iam_member.sources,
    google_pubsub_topic_iam_member.events,
    google_firestore_database.jobs,
  ]
}
