"""The local tuning server's model resource: the default checkpoint set by ``models.patch``."""

from __future__ import annotations

from deploy.local.tuning_server.resources import StoredModel


def model(default: str | None = None) -> StoredModel:
    checkpoints = [
        {"checkpoint_id": str(n), "epoch": n, "step": n * 6, "adapter_dir": f"models/m/ckpt-{n}"} for n in (1, 2, 3)
    ]
    return StoredModel(
        model_id="m",
        name="projects/p/locations/l/models/m",
        display_name="m",
        description="",
        labels={},
        job_name="projects/p/locations/l/tuningJobs/1",
        base_model="gemini-2.5-flash",
        local_model="smollm2-135m",
        checkpoints=checkpoints,
        deployments=[],
        create_time="2026-12-04T00:00:00Z",
        update_time="2026-12-04T00:00:00Z",
        default_checkpoint_id=default,
    )


def test_without_a_patch_the_last_checkpoint_is_the_default():
    assert model().checkpoint(None).checkpoint_id == "3"
    assert model().to_resource()["defaultCheckpointId"] == "3"


def test_the_patched_default_serves_the_model_and_is_reported():
    patched = model(default="1")
    assert patched.checkpoint(None).adapter_dir == "models/m/ckpt-1"  # what generation by model name uses
    assert patched.checkpoint("2").checkpoint_id == "2"  # an explicit checkpoint still wins
    assert patched.to_resource()["defaultCheckpointId"] == "1"
    assert StoredModel.from_dict(patched.to_dict()).default_checkpoint_id == "1"  # survives a restart
