"""Composition root: turns :class:`~shared.settings.Settings` into concrete adapters.

The only place that knows which adapter backs which port. GCP and the local stack differ only
in settings (emulator host variables are read by the Google client libraries themselves, and
``SFTPILOT_TUNING_BASE_URL`` points google-genai at the local tuning server). Clients are
created lazily and cached per process: functions-framework re-imports the source for every
test app, and a Cloud Functions instance should reuse its connections across invocations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from shared.logs import log_event, set_level
from shared.ports import BlobStore, Clock, JobStore, Publisher, SpendLedger, TuningBackend
from shared.pricing import PriceTable, load_price_table
from shared.records import utcnow
from shared.settings import Settings


@dataclass
class Services:
    """The ports one function invocation needs, built on first use."""

    settings: Settings
    clock: Clock = field(default=utcnow)

    @cached_property
    def blobs(self) -> BlobStore:
        """GCS (or fake-gcs-server when ``STORAGE_EMULATOR_HOST`` is set)."""
        from shared.adapters.gcs import GcsBlobStore  # noqa: PLC0415 - lazy: cold start

        return GcsBlobStore(project=self.settings.project)

    @cached_property
    def jobs(self) -> JobStore:
        """Firestore (or its emulator when ``FIRESTORE_EMULATOR_HOST`` is set)."""
        from shared.adapters.firestore import FirestoreJobStore  # noqa: PLC0415

        return FirestoreJobStore(
            project=self.settings.project,
            database=self.settings.firestore_database,
            jobs_collection=self.settings.jobs_collection,
            effects_collection=self.settings.effects_collection,
        )

    @cached_property
    def spend(self) -> SpendLedger:
        """The spending ledgers, in the job store's Firestore database."""
        from shared.adapters.firestore import FirestoreJobStore, FirestoreSpendLedger  # noqa: PLC0415

        store = self.jobs
        if not isinstance(store, FirestoreJobStore):
            # Only tests inject another job store; keep their ledger in memory beside it.
            from shared.adapters.fakes import FakeSpendLedger  # noqa: PLC0415

            return FakeSpendLedger()
        return FirestoreSpendLedger(store, self.settings.spending_collection)

    @cached_property
    def prices(self) -> PriceTable:
        """shared/pricing.yaml with ``SFTPILOT_PRICING_FILE``'s prices over it."""
        return load_price_table(self.settings.pricing_file)

    @cached_property
    def publisher(self) -> Publisher:
        """Pub/Sub (or its emulator when ``PUBSUB_EMULATOR_HOST`` is set)."""
        from shared.adapters.pubsub import PubSubPublisher  # noqa: PLC0415

        return PubSubPublisher(topic_path=self.settings.events_topic_path)

    @cached_property
    def tuning(self) -> TuningBackend:
        """Vertex AI through google-genai (or the local tuning server via its base URL)."""
        from shared.adapters.vertex import VertexTuningBackend  # noqa: PLC0415

        return VertexTuningBackend(
            project=self.settings.effective_tuning_project,
            location=self.settings.tuning_location,
            base_url=self.settings.tuning_base_url or None,
        )


_cached: Services | None = None


def services_from_env() -> Services:
    """Process-wide services built from the environment (validated on first call).

    The first call is the function instance's start-up: it also applies ``SFTPILOT_LOG_LEVEL``.
    """
    global _cached  # noqa: PLW0603 - per-process client cache
    if _cached is None:
        settings = Settings.from_env()
        set_level(settings.log_level)
        log_event(
            "DEBUG",
            "settings applied",
            project=settings.project,
            bucket=settings.bucket,
            events_topic=settings.events_topic_path,
            tuning_project=settings.effective_tuning_project,
            tuning_location=settings.tuning_location,
            tuning_base_url=settings.tuning_base_url or None,
            log_level=settings.log_level,
        )
        _cached = Services(settings=settings)
    return _cached


def install_services(services: Services | None) -> None:
    """Use ``services`` for this process instead of building them from the environment.

    For tests and the local harness that back the functions with fakes; ``None`` forgets the
    cache so the next :func:`services_from_env` reads the environment again.
    """
    global _cached  # noqa: PLW0603 - per-process client cache
    _cached = services


def reset_services_cache() -> None:
    """Forget the cached services (tests that change the environment)."""
    install_services(None)
