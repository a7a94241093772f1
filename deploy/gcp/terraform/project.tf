data "google_project" "this" {
  project_id = var.project
}

locals {
  project_number = data.google_project.this.number
}

resource "google_project_service" "apis" {
  for_each           = local.apis
  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

# Reading the Cloud Storage service agent also makes Google create it if it does not exist yet.
data "google_storage_project_service_account" "gcs_agent" {
  project    = var.project
  depends_on = [google_project_service.apis]
}

resource "google_service_account" "sa" {
  for_each     = local.service_accounts
  project      = var.project
  account_id   = each.value
  display_name = "sftpilot ${each.key} (${var.managed_by})"
  depends_on   = [google_project_service.apis]
}
