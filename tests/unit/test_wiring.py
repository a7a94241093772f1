"""The composition root applies the settings it reads at start-up (``SFTPILOT_LOG_LEVEL``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from shared import logs, wiring

ENV = {"GOOGLE_CLOUD_PROJECT": "p", "SFTPILOT_BUCKET": "datasets-bkt"}


@pytest.fixture(autouse=True)
def _fresh_start(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test is a new function instance: no cached services, the default log level."""
    level = logs.current_level()
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SFTPILOT_SETTINGS_FILE", raising=False)
    wiring.reset_services_cache()
    logs.set_level("INFO")
    yield
    wiring.reset_services_cache()
    logs.set_level(level)


def _lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_debug_lines_appear_when_log_level_is_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SFTPILOT_LOG_LEVEL", "DEBUG")
    wiring.services_from_env()
    logs.log_event("DEBUG", "probe")
    messages = [(e["severity"], e["message"]) for e in _lines(capsys.readouterr().err)]
    assert ("DEBUG", "settings applied") in messages
    assert ("DEBUG", "probe") in messages


@pytest.mark.parametrize("level", [None, "INFO", "WARNING"])
def test_debug_lines_are_dropped_unless_asked(
    level: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if level is None:
        monkeypatch.delenv("SFTPILOT_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("SFTPILOT_LOG_LEVEL", level)
    wiring.services_from_env()
    logs.log_event("DEBUG", "probe")
    logs.log_event("ERROR", "kept")
    severities = [e["severity"] for e in _lines(capsys.readouterr().err)]
    assert "DEBUG" not in severities
    assert severities == ["ERROR"]


def test_warning_level_drops_info(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SFTPILOT_LOG_LEVEL", "warning")
    wiring.services_from_env()
    logs.log_event("INFO", "dropped")
    logs.log_event("WARNING", "kept")
    assert [e["message"] for e in _lines(capsys.readouterr().err)] == ["kept"]


def test_installed_services_are_used_without_reading_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFTPILOT_BUCKET")
    services = wiring.Services(settings=wiring.Settings(project="p", bucket="other-bkt"))
    wiring.install_services(services)
    assert wiring.services_from_env() is services
