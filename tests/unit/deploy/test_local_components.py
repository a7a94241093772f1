"""A missing emulator, binary or JVM fails fast with a message naming the component and the fix."""

from __future__ import annotations

import pytest

from deploy.local.components import (
    FIRESTORE_EMULATOR_JAR,
    PUBSUB_EMULATOR_SCRIPT,
    MissingComponentError,
    locate_components,
)
from deploy.local.stack import LocalStack, StackComponents


def test_missing_pubsub_emulator_is_named_with_its_path(tmp_path):
    with pytest.raises(MissingComponentError) as err:
        locate_components(sdk_root=tmp_path)

    assert err.value.component == "Pub/Sub emulator"
    assert err.value.looked_at == str(tmp_path / PUBSUB_EMULATOR_SCRIPT)
    assert "google-cloud-cli-pubsub-emulator" in str(err.value)


def test_missing_firestore_emulator_is_named_when_pubsub_exists(tmp_path):
    script = tmp_path / PUBSUB_EMULATOR_SCRIPT
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")

    with pytest.raises(MissingComponentError) as err:
        locate_components(sdk_root=tmp_path)

    assert err.value.component == "Firestore emulator"
    assert err.value.looked_at == str(tmp_path / FIRESTORE_EMULATOR_JAR)


def test_missing_java_is_named(tmp_path):
    with pytest.raises(MissingComponentError) as err:
        locate_components(sdk_root=tmp_path, java="no-such-java-binary")

    assert err.value.component.startswith("Java runtime")


def test_a_stack_with_a_missing_component_starts_nothing(tmp_path):
    stack = LocalStack(tmp_path / "state", components=StackComponents.EMULATORS, sdk_root=tmp_path / "sdk")

    with pytest.raises(MissingComponentError):
        stack.start()

    assert stack.status() == []
    assert not (tmp_path / "state" / "stack.json").exists()
    assert not list((tmp_path / "state").glob("pids/*.pid"))
