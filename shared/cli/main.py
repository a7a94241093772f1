"""``sftpilot``: the operator CLI. Each sub-command lives in its own module and is added here."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sftpilot")
def main() -> None:
    """Validate, submit, track and operate Gemini supervised tuning jobs."""
