resource "google_pubsub_topic" "events" {
  name       = var.events_topic
  project    = var.project
  labels     = { managed-by = var.managed_by }
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  name       = local.dead_letter_topic
  project    = var.project
  labels     = { managed-by = var.managed_by }
  depends_on = [google_project_service.apis]
}

# A topic without subscriptions drops what is published to it: keep dead letters for a week.
resource "google_pubsub_subscription" "dead_letter_hold" {
  name                       = "${local.dead_letter_topic}-hold"
  project                    = var.project
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = local.dead_letter_hold_retention
  ack_deadline_seconds       = 60
  labels                     = { managed-by = var.managed_by }

  expiration_policy {
    ttl = ""
  }
}
