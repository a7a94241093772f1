"""Command line: ``python -m deploy.local.tuning_server --port 8090 --state-dir DIR ...``.

SIGTERM or Ctrl-C stops the server cleanly: running training workers are stopped and their
jobs stay RUNNING on disk, to be trained again from scratch when the server restarts.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from deploy.local.tuning_server.config import (
    DEFAULT_MODEL_MAP,
    ModelMapError,
    QuotaMode,
    ServerConfig,
    VersionedDelete,
    default_model_cache_dir,
    parse_model_map,
)
from deploy.local.tuning_server.server import TuningServer


def build_parser() -> argparse.ArgumentParser:
    """The CLI (also used by ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.tuning_server",
        description="Local Vertex AI-compatible tuning server (google-genai talks to it via base_url).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port (0 = any free port; default 8090)")
    parser.add_argument("--state-dir", type=Path, required=True, help="jobs, models, endpoints, adapters")
    parser.add_argument("--project", default=None, help="only serve this project (others get 403)")
    parser.add_argument("--location", default=None, help="only serve this location (others get 400)")
    parser.add_argument("--quota", type=int, default=1, help="concurrent tuning jobs (default 1, like Vertex)")
    parser.add_argument(
        "--quota-mode",
        choices=[mode.value for mode in QuotaMode],
        default=QuotaMode.REJECT.value,
        help="when the quota is full: reject = 429 RESOURCE_EXHAUSTED (default), "
        "queue = accept as JOB_STATE_PENDING + tuningJobState WAITING_FOR_QUOTA (Vertex does either)",
    )
    parser.add_argument(
        "--refuse-label-filter",
        action="store_true",
        help="answer 400 INVALID_ARGUMENT to list filters on labels.* (clients must fall back)",
    )
    parser.add_argument(
        "--model-map",
        default=None,
        help="base model -> local model, e.g. gemini-2.5-flash=smollm2-135m,gemini-2.5-flash-lite=tiny-llama "
        f"(default: {','.join(f'{k}={v}' for k, v in DEFAULT_MODEL_MAP.items())})",
    )
    parser.add_argument("--default-local-model", default="smollm2-135m", help="local model for other gemini-* names")
    parser.add_argument(
        "--model-cache-dir",
        type=Path,
        default=None,
        help=f"converted local models (default {default_model_cache_dir()})",
    )
    parser.add_argument("--default-epochs", type=int, default=3, help="epochs when a job does not say")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--worker-threads", type=int, default=None, help="torch threads per worker")
    parser.add_argument("--max-restarts", type=int, default=3, help="restarts of a RUNNING job before FAILED")
    parser.add_argument(
        "--operation-polls",
        type=int,
        default=1,
        help="polls an undeploy/delete operation stays done=false before it finishes (default 1; 0 = at once)",
    )
    parser.add_argument(
        "--versioned-model-delete",
        choices=[mode.value for mode in VersionedDelete],
        default=VersionedDelete.REJECT.value,
        help="DELETE models/ID@VERSION: reject = 400 INVALID_ARGUMENT (default), accept = delete the model",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Turn parsed arguments into a :class:`ServerConfig` (raises ValueError on bad values)."""
    if args.quota < 1:
        raise ValueError("--quota must be >= 1")
    if args.operation_polls < 0:
        raise ValueError("--operation-polls must be >= 0")
    if args.default_epochs < 1 or args.batch_size < 1 or args.max_seq_len < 8:
        raise ValueError("--default-epochs and --batch-size must be >= 1, --max-seq-len >= 8")
    model_map = dict(DEFAULT_MODEL_MAP)
    if args.model_map is not None:
        model_map = parse_model_map(args.model_map)
    return ServerConfig(
        state_dir=args.state_dir.resolve(),
        host=args.host,
        port=args.port,
        project=args.project,
        location=args.location,
        quota=args.quota,
        quota_mode=QuotaMode(args.quota_mode),
        refuse_label_filter=args.refuse_label_filter,
        model_map=model_map,
        default_local_model=args.default_local_model,
        model_cache_dir=(args.model_cache_dir or default_model_cache_dir()).resolve(),
        default_epochs=args.default_epochs,
        batch_size=args.batch_size,
        max_seq_len=args.max_seq_len,
        worker_threads=args.worker_threads,
        max_restarts=args.max_restarts,
        operation_polls=args.operation_polls,
        versioned_model_delete=VersionedDelete(args.versioned_model_delete),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except (ValueError, ModelMapError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        server = TuningServer(config)
    except OSError as error:
        print(f"error: cannot listen on {config.host}:{config.port}: {error.strerror}", file=sys.stderr)
        return 1

    def _stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return: call it from another thread
        threading.Thread(target=server.httpd.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"sftpilot local tuning server on {server.url} (state: {config.state_dir})", flush=True)
    server.serve_forever()
    server.httpd.server_close()
    server.app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
