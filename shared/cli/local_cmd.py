"""``sftpilot local up | down | env``: the embedded local cloud (see deploy/local/stack.py).

``up`` runs in the foreground with a live status line and returns only on Ctrl-C / SIGTERM,
after stopping everything it started. ``env`` prints ``export NAME=VALUE`` lines for a
running stack (``eval "$(sftpilot local env)"``), so the official google-cloud-* clients,
google-genai and ``sftpilot jobs ...`` talk to it unchanged. ``down`` stops a stack started
from another terminal (by the PIDs it recorded).
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import click

from shared.cli.common import EXIT_FAILED, EXIT_USAGE, cli_command, render_table
from shared.errors import SftpilotError

STATE_DIR_OPTION = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".sftpilot/local"),
    envvar="SFTPILOT_LOCAL_STATE_DIR",
    show_default=True,
    help="Where the stack keeps stack.json, pids/ and logs/.",
)


class _Shutdown(Exception):
    """Raised in the main thread by SIGTERM/SIGHUP so `up` unwinds and stops its processes."""


def _raise_shutdown(signum: int, _frame: FrameType | None) -> None:
    raise _Shutdown(signal.Signals(signum).name)


def _still_stopping(_signum: int, _frame: FrameType | None) -> None:
    click.echo("still stopping (waiting for the processes to exit) ...", err=True)


def _parse_model_map(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    mapping: dict[str, str] = {}
    for item in value.split(","):
        base, sep, local = item.strip().partition("=")
        if not sep or not base.strip() or not local.strip():
            raise click.BadParameter(f"expected BASE=LOCAL[,BASE=LOCAL...], got {item.strip()!r}")
        mapping[base.strip()] = local.strip()
    return mapping


@click.group("local")
def local_group() -> None:
    """Run the whole service on this machine: emulators, tuning server, functions, event wiring."""


@local_group.command("up")
@STATE_DIR_OPTION
@click.option("--project", default="sftpilot-local", show_default=True, help="Project id for every emulator.")
@click.option("--bucket", default="sftpilot-local-datasets", show_default=True, help="The datasets bucket.")
@click.option("--location", default="us-central1", show_default=True, help="Tuning location.")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between scheduler calls of the poll function.",
)
@click.option(
    "--model-map",
    callback=_parse_model_map,
    default=None,
    help="Gemini base model -> local model, e.g. gemini-2.5-flash=smollm2-135m (default: all -> smollm2-135m).",
)
@click.option("--quota", type=click.IntRange(min=1), default=1, show_default=True, help="Concurrent tuning jobs.")
@click.option("--no-tuning", is_flag=True, help="Do not start the local tuning server.")
@click.option("--no-functions", is_flag=True, help="Do not start the functions and their event wiring.")
@click.option(
    "--ephemeral",
    is_flag=True,
    help="Keep nothing: objects and records in memory only (default: resume from the state directory).",
)
@click.option(
    "--sdk-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Google Cloud SDK root holding the emulators (default: from `gcloud info`).",
)
def up(
    state_dir: Path,
    project: str,
    bucket: str,
    location: str,
    poll_interval: float,
    model_map: dict[str, str] | None,
    quota: int,
    no_tuning: bool,
    no_functions: bool,
    ephemeral: bool,
    sdk_root: Path | None,
) -> None:
    """Start the local stack and keep it running until Ctrl-C (or SIGTERM); then stop everything.

    Started again with the same --state-dir it resumes: objects, job records (as of the last
    snapshot: graceful stop or once a minute), tuning jobs, topics and subscriptions.
    `sftpilot local down --wipe` starts clean.
    """
    from deploy.local.components import MissingComponentError  # noqa: PLC0415 - CLI start-up speed
    from deploy.local.processes import ComponentError, ComponentStartError  # noqa: PLC0415
    from deploy.local.stack import (  # noqa: PLC0415
        LocalStack,
        StackAlreadyRunningError,
        StackComponents,
        StackSetupError,
    )

    failed = False
    components = StackComponents.EMULATORS
    if not no_tuning:
        components |= StackComponents.TUNING
    if not no_functions:
        components |= StackComponents.FUNCTIONS
    started_at = time.monotonic()

    def progress(message: str) -> None:
        click.echo(f"[{time.monotonic() - started_at:5.1f}s] {message}", err=True)

    stack = LocalStack(
        state_dir,
        project=project,
        components=components,
        bucket=bucket,
        location=location,
        poll_interval=poll_interval,
        model_map=model_map,
        quota=quota,
        sdk_root=sdk_root,
        on_progress=progress,
        persist=not ephemeral,
    )
    previous = {sig: signal.signal(sig, _raise_shutdown) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            stack.start()
        except (MissingComponentError, StackAlreadyRunningError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except (ComponentStartError, StackSetupError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        _print_summary(stack, time.monotonic() - started_at)
        try:
            _watch(stack)
        except ComponentError as exc:  # died for good, or a restart did not come up
            click.echo(f"\nerror: {exc}\nstopping the local stack.", err=True)
            failed = True
    except (KeyboardInterrupt, _Shutdown) as exc:
        reason = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
        click.echo(f"\n{reason}: stopping the local stack ...", err=True)
    finally:
        stopping_handlers = {
            sig: signal.signal(sig, _still_stopping) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        stack.stop()
        for sig, handler in {**stopping_handlers, **previous}.items():
            signal.signal(sig, handler)
    click.echo("local stack stopped.", err=True)
    if failed:
        sys.exit(EXIT_FAILED)


@local_group.command("down")
@STATE_DIR_OPTION
@click.option("--wipe", is_flag=True, help="Also delete the kept objects, job records and tuning jobs: start clean.")
def down(state_dir: Path, wipe: bool) -> None:
    """Stop a local stack started elsewhere (by the PIDs recorded in the state directory)."""
    from deploy.local.stack import stop_recorded_stack, wipe_state  # noqa: PLC0415

    stopped = stop_recorded_stack(state_dir)
    if not stopped:
        click.echo(f"no local stack was running in {state_dir}")
    for name in stopped:
        click.echo(f"stopped {name}")
    if wipe:
        try:
            removed = wipe_state(state_dir)
        except SftpilotError as exc:  # a stack that did not stop: never delete under it
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        click.echo(f"wiped {', '.join(removed)}" if removed else f"nothing kept in {state_dir} to wipe")


@local_group.command("env")
@STATE_DIR_OPTION
def env(state_dir: Path) -> None:
    """Print ``export NAME=VALUE`` lines for the running stack: ``eval "$(sftpilot local env)"``."""
    from deploy.local.stack import running_stack_env  # noqa: PLC0415

    values = running_stack_env(state_dir)
    if values is None:
        click.echo(
            f"error: no local stack is running in {state_dir} (start one with: {cli_command()} local up)", err=True
        )
        sys.exit(EXIT_USAGE)
    for name, value in sorted(values.items()):
        click.echo(f"export {name}={shlex.quote(value)}")


# --- output --------------------------------------------------------------------------------------


def _print_summary(stack: Any, seconds: float) -> None:
    rows = [[row.name, str(row.pid or ""), row.url or ""] for row in stack.status()]
    click.echo(f"\nsftpilot local stack is up ({seconds:.1f} s). State, PIDs and logs: {stack.state_dir}\n")
    click.echo(render_table(["COMPONENT", "PID", "URL"], rows))
    click.echo(
        f"\nbucket  gs://{stack.bucket}   (upload datasets to datasets/<lineage>/<name>.jsonl)"
        f"\nevents  {stack.events_topic_path}   dead letters: {stack.dead_letter_topic_path}"
    )
    program = cli_command()
    click.echo(f'\nUse it from another shell:  eval "$({program} local env{_state_dir_arg(stack)})"')
    for name, value in sorted(stack.env().items()):
        click.echo(f"  export {name}={shlex.quote(value)}")
    click.echo("\nCtrl-C stops everything.\n")


def _state_dir_arg(stack: Any) -> str:
    default = Path(".sftpilot/local").resolve()
    return "" if Path(stack.state_dir) == default else f" --state-dir {shlex.quote(str(stack.state_dir))}"


def _watch(stack: Any) -> None:
    """Refresh the status line until interrupted; report components that die."""
    os.environ.update(stack.env())  # the job counter below talks to the emulators
    from deploy.local.stack import SNAPSHOT_INTERVAL, StackSetupError  # noqa: PLC0415

    interactive = sys.stdout.isatty()
    last_line = ""
    next_snapshot = time.monotonic() + SNAPSHOT_INTERVAL
    while True:
        if time.monotonic() >= next_snapshot:  # bounds what a hard kill loses
            next_snapshot = time.monotonic() + SNAPSHOT_INTERVAL
            try:
                stack.snapshot()
            except StackSetupError as exc:
                click.echo(f"\nwarning: {exc}", err=True)
        # A dead component is restarted or ends `up` with its reason (ComponentDiedError):
        # a stack that silently stopped delivering uploads is worse than one that stops.
        for message in stack.supervise():
            click.echo(f"\nwarning: {message}", err=True)
        rows = stack.status()
        parts = [f"{row.name} {'up' if row.alive else 'DOWN'}" for row in rows]
        line = f"{time.strftime('%H:%M:%S')}  {' | '.join(parts)}  || jobs: {_job_counts(stack)}"
        if interactive:
            click.echo("\r\x1b[2K" + line, nl=False)
        elif line[10:] != last_line[10:]:
            click.echo(line)
        last_line = line
        time.sleep(1.0)


_counter_client: Any = None


def _job_counts(stack: Any) -> str:
    """``2 RUNNING, 1 SUCCEEDED`` from the jobs collection, or a short reason it is unknown."""
    global _counter_client  # noqa: PLW0603 - one client for the life of `up`
    try:
        from google.cloud import firestore  # noqa: PLC0415

        if _counter_client is None:
            _counter_client = firestore.Client(project=stack.project)
        counts: Counter[str] = Counter()
        for snapshot in _counter_client.collection("jobs").select(["status"]).stream(timeout=2):
            counts[str((snapshot.to_dict() or {}).get("status", "?"))] += 1
    except Exception as exc:  # a status line must never take the stack down
        return f"unavailable ({type(exc).__name__})"
    if not counts:
        return "none yet"
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
