"""``sftpilot ui``: open the dashboard in a browser through a local proxy that adds credentials."""

from __future__ import annotations

import os
import webbrowser
from pathlib import Path

import click

from shared.cli.common import friendly_errors


@click.command("ui")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8377, show_default=True, help="Local port (0: any free one)."
)
@click.option("--no-browser", is_flag=True, help="Only print the URL.")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=Path(".sftpilot/local"),
    envvar="SFTPILOT_LOCAL_STATE_DIR",
    show_default=True,
    help="Local stack state folder (used when SFTPILOT_API_URL is not set).",
)
@friendly_errors
def ui(port: int, no_browser: bool, state_dir: Path) -> None:
    """Serve the dashboard on 127.0.0.1 and open it.

    The jobs API is SFTPILOT_API_URL (a deployed service: SFTPILOT_API_TOKEN, else a Google
    identity token) or, when that is unset, the running local stack. Ctrl-C stops the proxy.
    """
    from shared.cli.ui_proxy import DashboardProxy, resolve_target  # noqa: PLC0415 - only for this command

    target = resolve_target(os.environ, state_dir)
    try:
        proxy = DashboardProxy(target, port=port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); try --port 0") from None
    click.echo(f"dashboard: {proxy.url}  (jobs API {target.api_url}, credentials: {target.source}; Ctrl-C stops)")
    if not no_browser:
        webbrowser.open(proxy.url)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.close()
