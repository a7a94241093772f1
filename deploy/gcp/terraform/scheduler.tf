# Every minute (poll_schedule), POST to the poller with an OIDC token of the scheduler account.
# No retries: the next tick is the retry, and the poller is idempotent.
resource "google_cloud_scheduler_job" "poll" {
  name             = "${var.name_prefix}-poll"
  project          = var.project
  region           = var.region
  schedule         = var.poll_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = local.scheduler_attempt_deadline

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.fn["poller"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.sa["scheduler"].email
      audience              = google_cloudfunctions2_function.fn["poller"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.invokers]
}
