"""Start a training worker that dies with the server.

``python -m deploy.local.tuning_server.launch REQUEST.json`` asks Linux to send this process
SIGTERM when its parent (the server's supervisor thread) goes away (``PR_SET_PDEATHSIG``), then
runs ``deploy.local.trainer.worker`` in the same process. A server killed with SIGKILL therefore
never leaves a worker training on its own; on other systems the call is skipped and the
server's restart logic kills orphans it can identify.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return


def main() -> None:
    """Arrange to die with the parent, then hand over to the trainer's worker entry point."""
    _die_with_parent()
    expected_parent = os.environ.get("SFTPILOT_TUNING_SERVER_PID")
    if expected_parent and os.getppid() != int(expected_parent):
        sys.exit(3)  # the server died before we could ask to die with it
    sys.argv = ["deploy.local.trainer.worker", *sys.argv[1:]]
    runpy.run_module("deploy.local.trainer.worker", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
