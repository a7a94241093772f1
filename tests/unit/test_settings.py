"""Every setting is read somewhere: a field nothing uses would be a promise the README breaks."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# Where settings take effect: the domain, its composition root and the entry points. The
# deployment generator (deploy/gcp) only maps names to variables; it does not count as a use.
CONSUMERS = [p for d in ("shared", "functions") for p in (ROOT / d).rglob("*.py") if p.name != "settings.py"]


def _consumer_text() -> str:
    return "\n".join(p.read_text() for p in CONSUMERS)


def _derived_names(field_name: str) -> set[str]:
    """Properties of Settings computed from ``field_name`` (e.g. ``events_topic_path``)."""
    names = set()
    for name, member in inspect.getmembers(Settings, lambda m: isinstance(m, property)):
        assert member.fget is not None
        if re.search(rf"\bself\.{field_name}\b", inspect.getsource(member.fget)):
            names.add(name)
    return names


@pytest.mark.parametrize("name", [f.name for f in fields(Settings)])
def test_every_setting_is_used_outside_settings(name: str) -> None:
    text = _consumer_text()
    readers = {name} | _derived_names(name)
    used = [r for r in readers if re.search(rf"\.{r}\b", text)]
    assert used, f"Settings.{name} is validated but never read by shared/ or functions/"


def test_log_level_is_validated_with_the_setting_named() -> None:
    with pytest.raises(Exception, match="SFTPILOT_LOG_LEVEL"):
        Settings(project="p", bucket="datasets-bkt", log_level="LOUD")
