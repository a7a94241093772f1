"""Child processes of the local stack: started with a log and a PID file, stopped by PID, never orphaned.

Each child runs in its own session (so a Ctrl-C in the terminal reaches only the supervisor,
which then stops the children in order) and, where ``setpriv`` exists, with a parent-death
signal, so even a supervisor killed with SIGKILL takes its Java emulators down with it. Stopping
sends SIGTERM to the child's process group (gunicorn workers, JVM threads), then SIGKILL after a
grace period. PID files hold the PID *and* the kernel start time, so ``sftpilot local down``
never signals an unrelated process that reused the PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import SftpilotError

ReadinessCheck = Callable[[], bool]
"""Returns True once the process serves requests (must not raise)."""

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ComponentError(SftpilotError):
    """A component of the local stack failed; names it, says why, and carries the tail of its log."""

    code = "E_LOCAL_COMPONENT"
    what = "failed"

    def __init__(self, component: str, reason: str, log_path: str, log_tail: str) -> None:
        self.component = component
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        tail = f"\n--- last lines of {log_path} ---\n{log_tail}" if log_tail else ""
        super().__init__(f"{component} {self.what}: {reason} (log: {log_path}){tail}")


class ComponentStartError(ComponentError):
    """A component exited or did not become ready in time."""

    code = "E_LOCAL_COMPONENT_START"
    what = "failed to start"


class ComponentDiedError(ComponentError):
    """A running component exited and cannot (or may no longer) be restarted: the stack stops, loud."""

    code = "E_LOCAL_COMPONENT_DIED"
    what = "died"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when ``GET url`` answers 2xx (no proxy, loopback only)."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tcp_open(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields_after_name = stat.rsplit(")", 1)[1].split()
    return fields_after_name[19] if len(fields_after_name) > 19 else None


def pid_matches(pid: int, start_time: str | None) -> bool:
    """True when ``pid`` is alive and is the same process that was recorded (not a reused PID)."""
    current = process_start_time(pid)
    if current is None:
        return False
    return start_time is None or current == start_time


def terminate_group(pid: int, grace_seconds: float = 10.0) -> bool:
    """SIGTERM the process group led by ``pid``, SIGKILL after ``grace_seconds``; True if gone."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                return True
            time.sleep(0.05)
    return not _group_alive(pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie group leader still "exists": treat a reaped-or-zombie leader with no others as gone.
    state = _proc_state(pgid)
    return state not in (None, "Z") or _other_group_members(pgid)


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _other_group_members(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pgid:
            continue
        try:
            fields_after_name = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields_after_name) > 2 and fields_after_name[2] == str(pgid) and fields_after_name[0] != "Z":
            return True
    return False


@dataclass
class ProcessSpec:
    """How to start one component and how to tell it is ready."""

    name: str
    argv: Sequence[str]
    ready: ReadinessCheck
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    port: int | None = None
    url: str | None = None
    ready_timeout: float = 60.0
    before_start: Callable[[], None] | None = None
    """Runs before every (re)start, e.g. to remove a stale readiness file."""
    restartable: bool = False
    """True when the component keeps no state in memory, so a fresh process replaces it fully."""


class ManagedProcess:
    """One running component: its Popen handle, log file and PID file."""

    def __init__(self, spec: ProcessSpec, state_dir: Path) -> None:
        self.spec = spec
        self.log_path = state_dir / "logs" / f"{spec.name}.log"
        self.pid_path = state_dir / "pids" / f"{spec.name}.pid"
        self._popen: subprocess.Popen[bytes] | None = None
        self.start_time: str | None = None

    @property
    def pid(self) -> int | None:
        """The child's PID once started."""
        return None if self._popen is None else self._popen.pid

    def start(self) -> None:
        """Spawn the process (does not wait for readiness)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        if self.spec.before_start is not None:
            self.spec.before_start()
        argv = [*_pdeathsig_prefix(), *self.spec.argv]
        env = {**os.environ, **self.spec.env}
        env.setdefault("NO_PROXY", "127.0.0.1,localhost")
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.spec.cwd,
                start_new_session=True,
            )
        self.start_time = process_start_time(self._popen.pid)
        self.pid_path.write_text(f"{self._popen.pid} {self.start_time or ''}\n")

    def wait_ready(self) -> None:
        """Block until the readiness check passes; ComponentStartError if the process dies or times out."""
        deadline = time.monotonic() + self.spec.ready_timeout
        delay = 0.02
        while True:
            code = self.returncode()
            if code is not None:
                raise ComponentStartError(
                    self.spec.name, f"exited with code {code}", str(self.log_path), self.log_tail()
                )
            if self.spec.ready():
                return
            if time.monotonic() > deadline:
                raise ComponentStartError(
                    self.spec.name,
                    f"not ready after {self.spec.ready_timeout:.0f} s",
                    str(self.log_path),
                    self.log_tail(),
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def returncode(self) -> int | None:
        """Exit code, or None while running."""
        return None if self._popen is None else self._popen.poll()

    def alive(self) -> bool:
        """True while the process runs."""
        return self._popen is not None and self._popen.poll() is None

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop the process group and reap it; removes the PID file."""
        if self._popen is not None:
            if self._popen.poll() is None:
                terminate_group(self._popen.pid, grace_seconds)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=5)
        self.pid_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig SIGTERM --`` when available: the child dies if the supervisor does."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def read_pid_file(path: Path) -> tuple[int, str | None] | None:
    """``(pid, start_time)`` from a PID file, or None if unreadable."""
    try:
        parts = path.read_text().split()
    except OSError:
        return None
    if not parts or not parts[0].isdigit():
        return None
    return int(parts[0]), (parts[1] if len(parts) > 1 else None)
