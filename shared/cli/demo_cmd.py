"""``sftpilot demo``: the whole pipeline on the embedded local stack (the README's main job)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from shared.cli.common import EXIT_FAILED, EXIT_OK, friendly_errors


@click.command("demo")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".sftpilot/demo"),
    show_default=True,
    help="Where logs, pids and copied reports go.",
)
@click.option("--keep", is_flag=True, help="Keep the stack up after the run, until Ctrl-C, to explore it with the CLI.")
@click.option(
    "--timeout",
    type=click.FloatRange(60, None),
    default=1200.0,
    show_default=True,
    help="Give up after this many seconds.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.5, 60),
    default=3.0,
    show_default=True,
    help="Seconds between scheduler-triggered polls.",
)
@click.option(
    "--model",
    type=click.Choice(["smollm2-135m", "tiny-llama"]),
    default="smollm2-135m",
    show_default=True,
    help="Local model every Gemini base model maps to (tiny-llama: seconds, but learns little).",
)
@friendly_errors
def demo(state_dir: Path, keep: bool, timeout: float, poll_interval: float, model: str) -> None:
    """Upload the bundled datasets and watch them get validated, tuned, tested and cleaned up."""
    from deploy.local.demo import DemoOptions, run_demo  # noqa: PLC0415 - starts heavy machinery
    from deploy.local.stack import DEFAULT_MODEL_MAP  # noqa: PLC0415

    options = DemoOptions(
        state_dir=state_dir,
        model_map=dict.fromkeys(DEFAULT_MODEL_MAP, model),
        poll_interval=poll_interval,
        timeout_seconds=timeout,
        keep=keep,
        expect_smoke_pass=model == "smollm2-135m",
    )
    result = run_demo(options, say=click.echo)
    sys.exit(EXIT_OK if not result.problems() else EXIT_FAILED)
