"""``sftpilot``: the operator CLI. Each sub-command lives in its own module and is added here."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sftpilot")
def main() -> None:
    """Validate, submit, track and operate Gemini supervised tuning jobs."""


from shared.cli.convert_cmd import convert  # noqa: E402
from shared.cli.demo_cmd import demo  # noqa: E402 - commands register after the group exists
from shared.cli.doctor_cmd import doctor  # noqa: E402
from shared.cli.events_cmd import events_group  # noqa: E402
from shared.cli.jobs_cmd import jobs_group  # noqa: E402
from shared.cli.local_cmd import local_group  # noqa: E402
from shared.cli.ui_cmd import ui  # noqa: E402
from shared.cli.upload_cmd import upload  # noqa: E402
from shared.cli.validate_cmd import validate  # noqa: E402

main.add_command(jobs_group)
main.add_command(events_group)
main.add_command(upload)
main.add_command(demo)
main.add_command(doctor)
main.add_command(local_group)
main.add_command(validate)
main.add_command(convert)
main.add_command(ui)
