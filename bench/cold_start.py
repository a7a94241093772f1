"""Cold-start benchmark: what loading each deployed entry point costs in a fresh interpreter.

Every Cloud Run function instance starts a new interpreter and loads ``functions/main.py``
(functions-framework's ``--source``), then looks up its ``--target``. This measures that, per
entry point, as the median of ``--runs`` fresh interpreters, and compares it with a bare
functions-framework function that imports the same Google client libraries
(google.cloud.storage, firestore, pubsub, google.genai) and nothing of ours.

Rows: ``functions.main`` alone (what every function loads) and each of the four targets
(``functions.main`` + ``getattr(main, target)``). Targets: ``functions.main``, upload and poll
<= 1.3x the baseline with no matplotlib loaded; completion <= 2x.

Our adapters import the Google clients on the first request that needs them
(``shared.wiring``), not at load; so each row is measured twice: the load alone, and the load
plus the four adapter modules (with their Google clients) that the first request imports. The
second is shown for comparison (our adapters add some Google modules of their own, e.g.
google.api_core retry and firestore transactions); the limits apply to the load, as specified.

    python -m bench.cold_start              # 11 runs per row, a Markdown table
    python -m bench.cold_start --runs 21 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("on_dataset_uploaded", "poll_tuning_jobs", "on_tuning_completed", "jobs_api")
LIMITS = {"functions.main": 1.3, "on_dataset_uploaded": 1.3, "poll_tuning_jobs": 1.3, "on_tuning_completed": 2.0}
NO_MATPLOTLIB = ("functions.main", "on_dataset_uploaded", "poll_tuning_jobs")

BASELINE_SOURCE = '''"""A bare function importing the Google client libraries sftpilot uses, and nothing of ours."""
import functions_framework
import google.cloud.firestore
import google.cloud.pubsub
import google.cloud.storage
import google.genai


@functions_framework.http
def bare(request):
    return "ok"
'''

_PROBE = """
import importlib, sys, time, json
sys.path.insert(0, {path!r})
t = time.perf_counter()
import {module} as m
{lookup}
loaded = time.perf_counter() - t
matplotlib = "matplotlib" in sys.modules
for adapter in {adapters!r}:
    importlib.import_module(adapter)
print(json.dumps({{"s": loaded, "with_clients_s": time.perf_counter() - t, "matplotlib": matplotlib}}))
"""
ADAPTERS = tuple(f"shared.adapters.{a}" for a in ("gcs", "firestore", "pubsub", "vertex"))
"""What the first request of a function imports (shared.wiring builds its adapters lazily)."""


def _probe(path: Path, module: str, target: str | None) -> dict[str, Any]:
    lookup = f"getattr(m, {target!r})" if target else ""
    adapters = () if module == "bare_main" else ADAPTERS
    code = _PROBE.format(path=str(path), module=module, lookup=lookup, adapters=adapters)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=path)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(runs: int = 11) -> dict[str, Any]:
    """Median import seconds per row (runs interleaved so background load hits all rows alike)."""
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = Path(tmp)
        (base_dir / "bare_main.py").write_text(BASELINE_SOURCE)
        rows_spec: dict[str, tuple[Path, str, str | None]] = {
            "baseline": (base_dir, "bare_main", "bare"),
            "functions.main": (REPO, "functions.main", None),
            **{t: (REPO, "functions.main", t) for t in TARGETS},
        }
        samples: dict[str, list[float]] = {name: [] for name in rows_spec}
        with_clients: dict[str, list[float]] = {name: [] for name in rows_spec}
        matplotlib: dict[str, bool] = {name: False for name in rows_spec}
        for spec in rows_spec.values():  # warm the file cache and .pyc files once
            _probe(*spec)
        for _ in range(runs):
            for name, spec in rows_spec.items():
                result = _probe(*spec)
                samples[name].append(result["s"])
                with_clients[name].append(result["with_clients_s"])
                matplotlib[name] = matplotlib[name] or result["matplotlib"]
    baseline = statistics.median(samples["baseline"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        first_request = statistics.median(with_clients[name])
        rows.append(
            {
                "entry": name,
                "median_ms": round(median * 1000, 1),
                "ratio": round(median / baseline, 2),
                "with_clients_ms": round(first_request * 1000, 1),
                "with_clients_ratio": round(first_request / baseline, 2),
                "limit": LIMITS.get(name, ""),
                "matplotlib_loaded": matplotlib[name],
            }
        )
    by_name = {r["entry"]: r for r in rows}
    targets = {f"{name} <= {limit}x baseline": by_name[name]["ratio"] <= limit for name, limit in LIMITS.items()}
    targets["no matplotlib for functions.main, upload, poll"] = not any(
        by_name[n]["matplotlib_loaded"] for n in NO_MATPLOTLIB
    )
    return {"bench": "cold_start", "runs": runs, "rows": rows, "targets": targets}


def _table(result: dict[str, Any]) -> str:
    lines = [
        "| entry | load ms | x baseline | + Google clients ms | x baseline | limit | matplotlib loaded |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['entry']} | {r['median_ms']} | {r['ratio']} | {r['with_clients_ms']} | {r['with_clients_ratio']} "
            f"| {r['limit']} | {r['matplotlib_loaded']} |"
        )
    lines += [f"- {'PASS' if ok else 'FAIL'} {t}" for t, ok in result["targets"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table (or JSON); exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="fresh interpreters per row (>= 10)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(max(args.runs, 10))
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
