"""``record.tuning``: the typed view of a tuning job stored on the record.

Written by the submission (the job it created or adopted) and by the poller (every change it
observes); below both so neither imports the other for it. Shape: see :mod:`shared.poller`.
"""

from __future__ import annotations

from shared.ports import TuningJob
from shared.record_parts import TuningView
from shared.records import JSON, to_rfc3339
from shared.states import WAITING_FOR_QUOTA


def tuning_view(job: TuningJob) -> TuningView:
    """The view of a tuning job stored as ``record.tuning`` (JSON shape: see :mod:`shared.poller`)."""
    error: JSON | None = None
    if job.error_code is not None or job.error_message:
        error = {"code": job.error_code, "message": job.error_message or ""}
    return TuningView(
        state=job.state.value,
        create_time=to_rfc3339(job.create_time),
        start_time=to_rfc3339(job.start_time),
        end_time=to_rfc3339(job.end_time),
        update_time=to_rfc3339(job.update_time),
        tuned_model=job.tuned_model,
        endpoint=job.endpoint,
        checkpoints=[
            {"checkpoint_id": c.checkpoint_id, "epoch": c.epoch, "step": c.step, "endpoint": c.endpoint}
            for c in job.checkpoints
        ],
        error=error,
        data_stats=job.data_stats,
        metrics=job.metrics,
        base_model=job.base_model or None,
        detail_state=job.detail_state,
        waiting_for_quota=job.detail_state == WAITING_FOR_QUOTA and not job.has_ended,
        curves=job.curves,
        evaluation=job.evaluation,
    )
