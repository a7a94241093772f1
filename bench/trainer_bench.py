"""Local trainer vs Hugging Face TRL ``SFTTrainer`` + peft on SmolLM2-135M, same data and settings.

Both engines train 100 support-bot examples (single-turn, from ``examples/datasets/support-bot``)
for 3 epochs with the same LoRA config (``engine.lora_config``: r=8 on every linear layer + the
final norm), batch 4, AdamW at 2e-4 with linear decay, gradient clipping 1.0, loss on the
completion (model turn) only, dynamic padding, bf16 autocast where the CPU has native bf16, and
the same torch thread count. Each engine runs in a fresh child process, one after the other;
we report total job time (process start to exit: imports, load, tokenization, training),
training time, seconds per step (median and mean), final loss and peak RSS.

TRL runs fully offline (``HF_HUB_OFFLINE=1``) against the local converted model folder.

Usage: ``python -m bench.trainer_bench [--examples 100] [--epochs 3] [--threads N]``.
The machine is shared: compare medians and the ratio, not single steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO / "examples" / "datasets" / "support-bot"
RESULTS = Path(__file__).resolve().parent / "results"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
ENGINES = ("sftpilot", "trl")


def run(
    examples: int = 100,
    epochs: int = 3,
    threads: int | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Run both engines on the same data and return rows + ratios for ``bench.run_all``.

    ``cache_dir`` defaults to the local tuning server's model cache, so the conversion is shared.
    """
    from deploy.local.trainer.models import SMOLLM2_135M, resolve_model_dir
    from deploy.local.trainer.threads import default_num_threads
    from deploy.local.tuning_server.config import default_model_cache_dir

    model_dir = resolve_model_dir(SMOLLM2_135M, cache_dir or default_model_cache_dir())
    num_threads = threads or default_num_threads(parameter_count=135_000_000)
    work = Path(tempfile.mkdtemp(prefix="sftpilot-trainer-bench-"))
    train_path = _write_bench_dataset(work / "train.jsonl", examples)
    spec = {
        "model_dir": str(model_dir),
        "train_path": str(train_path),
        "epochs": epochs,
        "threads": num_threads,
        "bf16": _bf16_supported(),
        "work_dir": str(work),
    }
    rows = [_run_child(engine, spec, work) for engine in ENGINES]
    ours, trl = rows
    result: dict[str, Any] = {
        "bench": "trainer",
        "examples": examples,
        "epochs": epochs,
        "threads": num_threads,
        "bf16_autocast": spec["bf16"],
        "rows": rows,
        "step_time_ratio_sftpilot_over_trl": round(ours["s_per_step_median"] / trl["s_per_step_median"], 2),
        "job_time_ratio_sftpilot_over_trl": round(ours["job_s"] / trl["job_s"], 2),
        "targets": {
            "sftpilot median step time no slower than TRL's": ours["s_per_step_median"] <= trl["s_per_step_median"],
            "sftpilot last-epoch mean loss within 15% of TRL's": abs(ours["last_epoch_loss"] - trl["last_epoch_loss"])
            <= 0.15 * trl["last_epoch_loss"],
        },
    }
    return result


def _bf16_supported() -> bool:
    from deploy.local.trainer.engine import cpu_supports_bf16

    return cpu_supports_bf16()


def _write_bench_dataset(path: Path, examples: int) -> Path:
    """The first ``examples`` single-turn examples of support-bot v1 then v2 (TRL's prompt-completion
    format holds one answer per example, so multi-turn examples are left out of both runs)."""
    chosen: list[str] = []
    for name in ("v1.jsonl", "v2.jsonl"):
        for line in (DATASETS / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and len(json.loads(line)["contents"]) == 2:
                chosen.append(line)
    if len(chosen) < examples:
        raise ValueError(f"only {len(chosen)} single-turn examples available, asked for {examples}")
    path.write_text("\n".join(chosen[:examples]) + "\n", encoding="utf-8")
    return path


def _run_child(engine: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    spec_path = work / f"{engine}.spec.json"
    out_path = work / f"{engine}.result.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, **OFFLINE_ENV}
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "bench.trainer_bench", "--child", engine, str(spec_path), str(out_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    job_seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{engine} run failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    steps: list[float] = measured.pop("step_seconds")
    losses: list[float] = measured.pop("losses")
    steps_per_epoch = len(losses) // spec["epochs"]
    return {
        "engine": engine,
        "job_s": round(job_seconds, 1),
        "train_s": round(measured["train_seconds"], 1),
        "steps": len(steps),
        "s_per_step_median": round(statistics.median(steps), 3),
        "s_per_step_mean": round(statistics.fmean(steps), 3),
        "first_loss": round(losses[0], 4),
        "final_loss": round(losses[-1], 4),
        "last_epoch_loss": round(statistics.fmean(losses[-steps_per_epoch:]), 4),
        "peak_rss_mb": measured["peak_rss_mb"],
    }


# ---- child processes ----------------------------------------------------------------------


def _child_sftpilot(spec: dict[str, Any]) -> dict[str, Any]:
    from deploy.local.trainer.spec import StepMetrics, TrainRequest
    from deploy.local.trainer.training import train

    stamps: list[float] = []
    losses: list[float] = []

    def on_step(metrics: StepMetrics) -> None:
        stamps.append(time.monotonic())
        losses.append(metrics.train_total_loss)

    request = TrainRequest(
        model_dir=Path(spec["model_dir"]),
        train_path=Path(spec["train_path"]),
        validation_path=None,
        output_dir=Path(spec["work_dir"]) / "sftpilot-out",
        epochs=spec["epochs"],
        precision="bf16" if spec["bf16"] else "fp32",
        num_threads=spec["threads"],
    )
    checks: list[float] = []

    def should_stop() -> bool:
        # called once after reading the data (before the model loads), then before every step
        checks.append(time.monotonic())
        return False

    started = time.monotonic()
    train(request, on_step=on_step, should_stop=should_stop)
    step_seconds = [end - begin for begin, end in zip(checks[1:], stamps, strict=True)]
    return {"step_seconds": step_seconds, "losses": losses, "train_seconds": time.monotonic() - started}


def _child_trl(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from deploy.local.trainer.engine import lora_config

    torch.set_num_threads(spec["threads"])
    started = time.monotonic()
    records = []
    for line in Path(spec["train_path"]).read_text(encoding="utf-8").splitlines():
        example = json.loads(line)
        prompt = []
        if "systemInstruction" in example:
            prompt.append({"role": "system", "content": example["systemInstruction"]["parts"][0]["text"]})
        user, model = example["contents"]
        prompt.append({"role": "user", "content": user["parts"][0]["text"]})
        records.append({"prompt": prompt, "completion": [{"role": "assistant", "content": model["parts"][0]["text"]}]})

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.begin = 0.0
            self.seconds: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.begin = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds.append(time.monotonic() - self.begin)

    config = SFTConfig(
        output_dir=str(Path(spec["work_dir"]) / "trl-out"),
        num_train_epochs=spec["epochs"],
        per_device_train_batch_size=4,
        learning_rate=2e-4,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        bf16=spec["bf16"],
        use_cpu=True,
        seed=0,
        max_length=512,
        packing=False,
        completion_only_loss=True,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    timer = StepTimer()
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32),
        args=config,
        train_dataset=Dataset.from_list(records),
        processing_class=AutoTokenizer.from_pretrained(spec["model_dir"]),
        peft_config=lora_config(8),
        callbacks=[timer],
    )
    trainer.train()
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    return {"step_seconds": timer.seconds, "losses": losses, "train_seconds": time.monotonic() - started}


def _child_main(engine: str, spec_path: Path, out_path: Path) -> int:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    measured = _child_sftpilot(spec) if engine == "sftpilot" else _child_trl(spec)
    measured["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out_path.write_text(json.dumps(measured), encoding="utf-8")
    return 0


def _print_table(result: dict[str, Any]) -> None:
    rows = result["rows"]
    keys = list(rows[0])
    print(" | ".join(f"{key:>17}" for key in keys))
    for row in rows:
        print(" | ".join(f"{row[key]!s:>17}" for key in keys))
    print(
        f"threads={result['threads']} bf16={result['bf16_autocast']} "
        f"step ratio sftpilot/trl={result['step_time_ratio_sftpilot_over_trl']} "
        f"job ratio={result['job_time_ratio_sftpilot_over_trl']}"
    )
    for target, ok in result["targets"].items():
        print(f"{'PASS' if ok else 'FAIL'} {target}")


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["--child"]:
        return _child_main(args_list[1], Path(args_list[2]), Path(args_list[3]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both engines")
    parser.add_argument("--cache-dir", type=Path, default=None, help="converted-model cache (default: the server's)")
    args = parser.parse_args(args_list)
    result = run(examples=args.examples, epochs=args.epochs, threads=args.threads, cache_dir=args.cache_dir)
    _print_table(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "trainer_bench.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
