resource "google_storage_bucket" "datasets" {
  name                        = var.bucket
  project                     = var.project
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = { managed-by = var.managed_by }

  versioning {
    enabled = var.bucket_versioning
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "sources" {
  name                        = local.source_bucket
  project                     = var.project
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = { managed-by = var.managed_by }

  lifecycle {
    # The default name is "<bucket>-sources": Cloud Storage allows at most 63 characters.
    precondition {
      condition     = length(local.source_bucket) <= 63
      error_message = "source bucket name ${local.source_bucket} is longer than 63 characters: shorten bucket or set source_bucket."
    }
  }

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# The packaged source (python -m deploy.gcp.package) plus the tuning defaults rendered from the
# variables. Every file of the package is text, so it is read with file().
data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.module}/../build/sftpilot-source-terraform.zip"

  dynamic "source" {
    for_each = fileset(local.source_dir, "**")
    content {
      content  = file("${local.source_dir}/${source.value}")
      filename = source.value
    }
  }

  source {
    content  = yamlencode(local.tuning_defaults)
    filename = local.defaults_file_name
  }

  lifecycle {
    precondition {
      condition     = fileexists("${local.source_dir}/main.py") && !fileexists("${local.source_dir}/${local.defaults_file_name}")
      error_message = "No packaged source in ${local.source_dir}: run `python -m deploy.gcp.package` (without --vars) from the repository root first."
    }
  }
}

resource "google_storage_bucket_object" "source" {
  name   = "sources/sftpilot-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.sources.name
  source = data.archive_file.source.output_path
}
