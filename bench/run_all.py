"""Run every benchmark and write one Markdown report (``bench/results/latest.md``).

* validator vs bare ``orjson.loads`` (MB/s, peak RSS) - ``bench.validator_bench``
* poller scale (1,000 active jobs, 50 ms tuning latency) - ``bench.poller_bench``
* local end-to-end latencies on the real local stack - ``bench.e2e_bench``
* local trainer vs Hugging Face TRL on SmolLM2 - ``bench.trainer_bench``
* cold start of each deployed entry point vs a bare function - ``bench.cold_start``

Usage: ``make bench`` or ``python -m bench.run_all [--validator-mb 1024] [--only validator poller]``.
Timing claims live here, never in tests; the machine is shared, so compare medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _validator(args: argparse.Namespace) -> dict[str, Any]:
    from bench import validator_bench

    return validator_bench.run(size_mb=args.validator_mb, repeats=args.repeats)


def _poller(args: argparse.Namespace) -> dict[str, Any]:
    from bench import poller_bench

    return poller_bench.run()


def _e2e(args: argparse.Namespace) -> dict[str, Any]:
    from bench import e2e_bench

    return e2e_bench.run()


def _cold_start(args: argparse.Namespace) -> dict[str, Any]:
    from bench import cold_start

    return cold_start.run()


def _trainer(args: argparse.Namespace) -> dict[str, Any]:
    from bench import trainer_bench

    result: dict[str, Any] = trainer_bench.run()
    return result


BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "validator": _validator,
    "poller": _poller,
    "e2e": _e2e,
    "trainer": _trainer,
    "cold_start": _cold_start,
}


def markdown(results: dict[str, dict[str, Any]], elapsed: float) -> str:
    """The report: one section per benchmark with its rows, ratios and target verdicts."""
    out = [
        "# sftpilot benchmark report",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} - {platform.machine()}, "
        f"Python {platform.python_version()}, total {elapsed:.0f} s",
        "",
    ]
    for name, result in results.items():
        out.append(f"## {name}")
        out.append("")
        if "error" in result:
            out.append(f"failed: `{result['error']}`")
            out.append("")
            continue
        rows = result.get("rows") or []
        if rows:
            keys = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))]
            out.append("| " + " | ".join(keys) + " |")
            out.append("|" + "---|" * len(keys))
            for row in rows:
                out.append("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
            out.append("")
        scalars = {
            k: v for k, v in result.items() if k not in {"rows", "targets", "bench"} and not isinstance(v, (dict, list))
        }
        if scalars:
            out.append(", ".join(f"{k}: **{v}**" for k, v in scalars.items()))
            out.append("")
        for target, ok in (result.get("targets") or {}).items():
            out.append(f"- {'PASS' if ok else 'FAIL'} {target}")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES), default=list(BENCHES))
    parser.add_argument("--validator-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    for name in args.only:
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = BENCHES[name](args)
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    report = markdown(results, time.monotonic() - started)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(report)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    print(report)
    failed = [n for n, r in results.items() if "error" in r or not all((r.get("targets") or {}).values())]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
