"""Integration tests run against the real emulators, started once per session.

Fixtures (see deploy/local/pytest_fixtures.py): ``emulators`` (session; the LocalStack, env
vars exported), ``gcs_bucket``, ``pubsub_topic``, ``firestore_collections`` (per test, unique
names).
"""

from deploy.local.pytest_fixtures import *  # noqa: F403
