output "dataset_upload_prefix" {
  description = "Upload datasets here: <prefix><lineage>/<name>.jsonl."
  value       = "gs://${google_storage_bucket.datasets.name}/${var.datasets_prefix}"
}

output "events_topic" {
  description = "Subscribe to sftpilot events here."
  value       = google_pubsub_topic.events.id
}

output "dead_letter_subscription" {
  description = "Upload events that failed every delivery attempt wait here (7 days)."
  value       = google_pubsub_subscription.dead_letter_hold.id
}

output "jobs_api_url" {
  description = "The jobs API (authenticated: members of api_invokers)."
  value       = local.api_url
}

output "function_env" {
  description = "The environment every function runs with."
  value       = local.function_env
}

output "service_accounts" {
  description = "The deployment's service accounts."
  value       = { for k, sa in google_service_account.sa : k => sa.email }
}
