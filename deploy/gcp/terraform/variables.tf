# The deployment's configuration. Set values in terraform.tfvars (copy terraform.tfvars.example);
# deploy.sh reads the same file. Names, types and defaults are mirrored by
# deploy/gcp/config.py:DeploymentVars (a test keeps them identical).

variable "project" {
  description = "GCP project ID to deploy into."
  type        = string
}

variable "bucket" {
  description = "Name of the dataset bucket (created). Upload datasets under datasets_prefix."
  type        = string

  # https://cloud.google.com/storage/docs/buckets#naming: 3-63 characters.
  validation {
    condition     = length(var.bucket) >= 3 && length(var.bucket) <= 63
    error_message = "bucket: Cloud Storage bucket names are 3-63 characters."
  }
}

variable "region" {
  description = "Region of the functions, the bucket, the scheduler job and the Eventarc triggers."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region: not a region like us-central1 or europe-west10."
  }
}

variable "name_prefix" {
  description = "Prefix of every created name (functions, service accounts, scheduler job)."
  type        = string
  default     = "sftpilot"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,17}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix: 3-19 chars of a-z, 0-9 and -, starting with a letter."
  }
}

variable "managed_by" {
  description = "Value of the managed-by label: only models carrying it are ever deleted by cleanup."
  type        = string
  default     = "sftpilot"
  validation {
    condition     = can(regex("^[a-z0-9_-]{1,63}$", var.managed_by))
    error_message = "managed_by: a label value, 1-63 chars of a-z, 0-9, _ and -."
  }
}

variable "datasets_prefix" {
  description = "Folder of the bucket watched for datasets (ends with /)."
  type        = string
  default     = "datasets/"
}

variable "reports_prefix" {
  description = "Folder the functions write reports to; the only folder they may write."
  type        = string
  default     = "reports/"
}

variable "events_topic" {
  description = "Topic ID of the sftpilot events (created)."
  type        = string
  default     = "sftpilot-events"
}

variable "dead_letter_topic" {
  description = "Topic ID receiving upload events that failed every delivery attempt. Empty: <name_prefix>-uploads-dead-letter."
  type        = string
  default     = ""
}

variable "dead_letter_max_attempts" {
  description = "Deliveries of an upload event before it goes to the dead-letter topic (5-100)."
  type        = number
  default     = 10
  validation {
    condition     = var.dead_letter_max_attempts >= 5 && var.dead_letter_max_attempts <= 100
    error_message = "dead_letter_max_attempts: Pub/Sub allows 5 to 100."
  }
}

variable "bucket_versioning" {
  description = "Turn on object versioning for the dataset bucket."
  type        = bool
  default     = false
}

variable "source_bucket" {
  description = "Bucket for the function source archives (created). Empty: <bucket>-sources."
  type        = string
  default     = ""
}

variable "firestore_database" {
  description = "Firestore database ID of the job records; the functions' Firestore access is limited to it."
  type        = string
  default     = "sftpilot"
}

variable "firestore_location" {
  description = "Location of the Firestore database. Empty: the region."
  type        = string
  default     = ""
}

variable "create_firestore_database" {
  description = "Create the Firestore database (false when it already exists)."
  type        = bool
  default     = true
}

variable "jobs_collection" {
  description = "Collection of the job records (its composite indexes are declared)."
  type        = string
  default     = "jobs"
}

variable "effects_collection" {
  description = "Collection of the side-effect claims."
  type        = string
  default     = "effects"
}

variable "poll_schedule" {
  description = "Cron schedule of the poller (Cloud Scheduler, UTC)."
  type        = string
  default     = "* * * * *"
}

variable "tuning_location" {
  description = "Vertex AI region of the tuning jobs. Null: the sftpilot default (us-central1)."
  type        = string
  default     = null

  # Regions of "Supported tuning job regions" on
  # https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning-region-settings
  # (read 2026-12-04); the same list as TUNING_REGIONS in deploy/gcp/config.py.
  validation {
    condition     = var.tuning_location == null || contains(["asia-east1", "asia-east2", "asia-northeast1", "asia-northeast3", "asia-south1", "asia-southeast1", "australia-southeast1", "europe-central2", "europe-north1", "europe-southwest1", "europe-west1", "europe-west2", "europe-west3", "europe-west4", "europe-west6", "europe-west8", "europe-west9", "me-central1", "me-central2", "me-west1", "northamerica-northeast1", "southamerica-east1", "us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1", "us-west4"], coalesce(var.tuning_location, "us-central1"))
    error_message = "tuning_location: Gemini supervised tuning is offered in asia-east1, asia-east2, asia-northeast1, asia-northeast3, asia-south1, asia-southeast1, australia-southeast1, europe-central2, europe-north1, europe-southwest1, europe-west1, europe-west2, europe-west3, europe-west4, europe-west6, europe-west8, europe-west9, me-central1, me-central2, me-west1, northamerica-northeast1, southamerica-east1, us-central1, us-east1, us-east4, us-east5, us-south1, us-west1, us-west4."
  }
}

variable "max_event_age_seconds" {
  description = "Upload events older than this are recorded as DROPPED. Null: the sftpilot default."
  type        = number
  default     = null
}

variable "lease_seconds" {
  description = "In-progress claims older than this are taken over. Null: the sftpilot default."
  type        = number
  default     = null
}

variable "stall_after_seconds" {
  description = "A job pending longer than this (not only waiting for quota) produces one job.stalled event. Null: the sftpilot default."
  type        = number
  default     = null
}

variable "poll_concurrency" {
  description = "Parallel tuning-job reads per poll. Null: the sftpilot default."
  type        = number
  default     = null
}

variable "max_reported_errors" {
  description = "Errors listed in a validation report (counting goes on). Null: the sftpilot default."
  type        = number
  default     = null
}

variable "log_level" {
  description = "DEBUG, INFO, WARNING or ERROR. Null: the sftpilot default."
  type        = string
  default     = null
}

variable "api_audience" {
  description = "Audience the jobs API expects in identity tokens. Empty: its cloudfunctions.net URL."
  type        = string
  default     = ""
}

variable "api_invokers" {
  description = "Members allowed to call the jobs API (user:, group:, serviceAccount:, domain:). Never public."
  type        = list(string)
  default     = []
  validation {
    condition = alltrue([
      for m in var.api_invokers :
      can(regex("^(user|group|serviceAccount|domain):[^\\s,]+$", m)) && !contains(["allusers", "allauthenticatedusers"], lower(m))
    ])
    error_message = "api_invokers: user:, group:, serviceAccount: or domain: members only; allUsers and allAuthenticatedUsers are refused."
  }
}

variable "api_cancel_principals" {
  description = "E-mail addresses allowed to cancel jobs through the jobs API."
  type        = list(string)
  default     = []
}

variable "tuning_service_accounts" {
  description = "Service accounts a tuning.yaml may name as service_account (the functions get actAs on them)."
  type        = list(string)
  default     = []
}

variable "grant_tuning_agent_bucket_read" {
  description = "Let the Vertex AI fine-tuning service agent read the bucket (it exists after the project's first tuning job)."
  type        = bool
  default     = true
}

variable "default_base_model" {
  description = "Deployment-wide tuning default: base model."
  type        = string
  default     = "gemini-2.5-flash"
}

variable "default_epochs" {
  description = "Deployment-wide tuning default: epochs. Null: the service chooses."
  type        = number
  default     = null
}

variable "default_adapter_size" {
  description = "Deployment-wide tuning default: adapter size (1, 2, 4, 8, 16). Null: the service chooses."
  type        = number
  default     = null
}

variable "default_learning_rate_multiplier" {
  description = "Deployment-wide tuning default: learning-rate multiplier. Null: the service chooses."
  type        = number
  default     = null
}

variable "default_labels" {
  description = "Deployment-wide labels added to every tuning job."
  type        = map(string)
  default     = {}
}

variable "smoke_test_enabled" {
  description = "Deployment-wide default: smoke-test every successfully tuned endpoint."
  type        = bool
  default     = true
}

variable "cleanup_enabled" {
  description = "Cleanup policy: retire superseded models of a lineage after a passing smoke test."
  type        = bool
  default     = false
}

variable "cleanup_keep_last" {
  description = "Cleanup policy: newest passing models of a lineage to keep, the new one included."
  type        = number
  default     = 1
  validation {
    condition     = var.cleanup_keep_last >= 1
    error_message = "cleanup_keep_last: at least 1."
  }
}

variable "cleanup_dry_run" {
  description = "Cleanup policy: only report what would be retired."
  type        = bool
  default     = false
}

variable "cleanup_on_failure" {
  description = "Cleanup policy: also remove the models of failed or cancelled jobs."
  type        = bool
  default     = false
}

variable "source_dir" {
  description = "Packaged function source (python -m deploy.gcp.package). Empty: deploy/gcp/build/source."
  type        = string
  default     = ""
}
