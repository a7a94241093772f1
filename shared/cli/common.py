"""Helpers shared by the CLI commands: error handling, exit codes, JSON output, tables."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import click

from shared.api_client import ApiError, JobsClient, gcloud_identity_token
from shared.errors import SftpilotError
from shared.settings import ClientSettings

EXIT_OK = 0
EXIT_FAILED = 1
"""The operation ran and its answer is "no" (invalid dataset, job failed, API said 404/409)."""
EXIT_USAGE = 2
"""Bad usage, missing configuration, unreachable service, unreadable file."""

P = ParamSpec("P")
R = TypeVar("R")


def friendly_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn our exceptions into one clear line on stderr and an exit code: never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ApiError as exc:
            click.echo(f"error: {exc.message} ({exc.error_code}, HTTP {exc.status})", err=True)
            sys.exit(EXIT_FAILED)
        except SftpilotError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)

    return wrapper


def print_json(value: Any) -> None:
    """Exactly one JSON document on stdout."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def jobs_client(settings: ClientSettings | None = None) -> JobsClient:
    """A client for the configured jobs API (token from env, else gcloud)."""
    settings = settings or ClientSettings.from_env()
    url = settings.require("api_url")
    token = settings.api_token or gcloud_identity_token()
    return JobsClient(url, token)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table (no colours: it goes into logs and CI output too).

    >>> print(render_table(["A", "B"], [["x", "yy"]]))
    A  B
    x  yy
    """
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def cli_command(argv0: str | None = None, path: str | None = None, cwd: str | None = None) -> str:
    """How to run ``sftpilot`` again in a hint: ``sftpilot`` when the PATH finds this same program,
    else the path it was started by (``.venv/bin/sftpilot`` in a fresh clone), so a hint pasted
    into a new shell works as printed.

    >>> cli_command("/repo/.venv/bin/sftpilot", path="/usr/bin", cwd="/repo")
    '.venv/bin/sftpilot'
    """
    program = os.path.abspath(argv0 or sys.argv[0])
    if os.path.basename(program) != "sftpilot":
        program = os.path.join(os.path.dirname(sys.executable), "sftpilot")
    found = shutil.which("sftpilot", path=path if path is not None else os.environ.get("PATH"))
    if found and os.path.realpath(found) == os.path.realpath(program):
        return "sftpilot"
    relative = os.path.relpath(program, cwd or os.getcwd())
    return relative if not relative.startswith("..") else program
