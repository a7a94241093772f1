"""Deployment to Google Cloud: the variables file, source packaging, and README tables.

Terraform lives in ``deploy/gcp/terraform/``; the gcloud path is ``deploy/gcp/deploy.sh``.
Both read the same variables file and apply the same grants (``deploy/gcp/roles.json``) and
Firestore indexes (``deploy/gcp/firestore_indexes.json``).
"""
