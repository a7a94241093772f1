resource "google_firestore_database" "jobs" {
  count       = var.create_firestore_database ? 1 : 0
  project     = var.project
  name        = var.firestore_database
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"
  depends_on  = [google_project_service.apis]
}

# Every composite index the job store's queries need (firestore_indexes.json, generated from
# shared.adapters.firestore.REQUIRED_COMPOSITE_INDEXES; a test keeps them equal).
resource "google_firestore_index" "jobs" {
  for_each    = local.job_indexes
  project     = var.project
  database    = var.firestore_database
  collection  = var.jobs_collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value
    content {
      field_path = fields.value.field_path
      order      = fields.value.order
    }
  }

  depends_on = [google_firestore_database.jobs]
}
