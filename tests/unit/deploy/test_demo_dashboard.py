"""The demo starts the dashboard proxy for its stack and says where it is."""

from __future__ import annotations

from types import SimpleNamespace

from deploy.local.demo import _start_dashboard


def test_the_demo_prints_a_dashboard_url_for_its_stack():
    said: list[str] = []
    stack = SimpleNamespace(env=lambda: {"SFTPILOT_API_URL": "http://127.0.0.1:9", "SFTPILOT_API_TOKEN": "t"})
    proxy = _start_dashboard(stack, said.append)  # type: ignore[arg-type]
    try:
        assert proxy is not None and proxy.target.token() == "t"
        assert said == [f"dashboard (live while the demo runs): {proxy.url}"]
        assert proxy.url.startswith("http://127.0.0.1:") and proxy.url.endswith("/ui/")
    finally:
        proxy.close()


def test_no_api_means_no_dashboard():
    said: list[str] = []
    assert _start_dashboard(SimpleNamespace(env=lambda: {}), said.append) is None  # type: ignore[arg-type]
    assert said == []
