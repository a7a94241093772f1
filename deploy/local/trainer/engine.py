"""The training loop behind ``api.train`` (torch, transformers and peft are imported here only).

Recipe (measured on 2-core CPUs, see the design notes): LoRA on every linear layer plus the
final norm, loss only on model turns, batches padded to their longest example, bf16 autocast
where the CPU has native bf16, AdamW with a linear decay to zero, one checkpoint per epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from deploy.local.trainer.dataset import read_conversations
from deploy.local.trainer.errors import EmptyDatasetError, TrainingCancelled
from deploy.local.trainer.formatting import IGNORE_INDEX, EncodedExample, encode_conversation
from deploy.local.trainer.spec import (
    Checkpoint,
    DataStats,
    Precision,
    StepMetrics,
    TrainRequest,
    TrainResult,
)
from deploy.local.trainer.threads import default_num_threads

CHECKPOINTS_DIR = "checkpoints"
# The final norm is trained alongside LoRA: a tiny random model stalls without it, and for a
# real model it adds a few hundred parameters.
EXTRA_TRAINED_MODULES = ("norm",)
MAX_GRAD_NORM = 1.0


@dataclass(frozen=True)
class EncodedDataset:
    """A tokenized JSONL file plus what ``DataStats`` reports about it."""

    examples: list[EncodedExample]  # trainable examples only
    example_count: int
    token_count: int
    character_count: int
    truncated_indices: list[int]
    dropped_count: int
    skipped_non_text_parts: int


def run_training(
    request: TrainRequest,
    *,
    on_step: Callable[[StepMetrics], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_data_stats: Callable[[DataStats], None] | None = None,
) -> TrainResult:
    """See ``deploy.local.trainer.spec.train``."""
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    stop_requested = should_stop or (lambda: False)
    tokenizer = load_tokenizer(request.model_dir)
    train_set = encode_file(tokenizer, request.train_path, request.max_seq_len)
    validation_set = (
        encode_file(tokenizer, request.validation_path, request.max_seq_len)
        if request.validation_path is not None
        else None
    )
    data_stats = describe_data(train_set, validation_set, request)
    total_steps = data_stats.step_count
    if on_data_stats is not None:
        on_data_stats(data_stats)
    if stop_requested():
        raise TrainingCancelled(0)

    torch.manual_seed(request.seed)
    model = AutoModelForCausalLM.from_pretrained(str(request.model_dir), dtype=torch.float32)
    parameter_count = sum(parameter.numel() for parameter in model.parameters())
    torch.set_num_threads(request.num_threads or default_num_threads(parameter_count))
    model.config.use_cache = False
    model = make_trainable(model, request)
    model.train()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=request.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: max(0.0, 1.0 - done / total_steps))
    dtype = autocast_dtype(request.precision)
    pad_id = pad_token_id(tokenizer)
    shuffler = torch.Generator().manual_seed(request.seed)

    checkpoints: list[Checkpoint] = []
    metrics: list[StepMetrics] = []
    step = 0
    for epoch in range(1, request.epochs + 1):
        order = torch.randperm(len(train_set.examples), generator=shuffler).tolist()
        for start in range(0, len(order), request.batch_size):
            if stop_requested():
                raise TrainingCancelled(step)
            batch = [train_set.examples[index] for index in order[start : start + request.batch_size]]
            loss, correct, count = batch_loss(model, collate(batch, pad_id), dtype)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            step += 1
            step_metrics = StepMetrics(
                step=step,
                epoch=epoch,
                train_total_loss=float(loss.detach()),
                train_fraction_of_correct_next_step_preds=correct / count,
            )
            last_of_epoch = start + request.batch_size >= len(order)
            if last_of_epoch and validation_set is not None:
                eval_loss, eval_accuracy = evaluate(
                    model, validation_set.examples, request, pad_id, stop_requested, completed_steps=step
                )
                step_metrics = dataclasses.replace(
                    step_metrics,
                    eval_total_loss=eval_loss,
                    eval_fraction_of_correct_next_step_preds=eval_accuracy,
                )
            metrics.append(step_metrics)
            if on_step is not None:
                on_step(step_metrics)
        checkpoints.append(save_checkpoint(model, tokenizer, request, epoch=epoch, step=step))
    return TrainResult(checkpoints=checkpoints, data_stats=data_stats, metrics=metrics)


def cpu_supports_bf16() -> bool:
    """True when oneDNN runs bf16 natively here (AVX512-BF16 / AMX); emulated bf16 is slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (``None`` means plain fp32)."""
    if precision == "fp32":
        return None
    if precision == "bf16" or cpu_supports_bf16():
        return torch.bfloat16
    return None


def load_tokenizer(model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(model_dir))


def pad_token_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad)


def encode_file(tokenizer: Any, path: Path, max_seq_len: int) -> EncodedDataset:
    """Parse and tokenize a JSONL file; raises ``DatasetError`` if nothing can be trained on."""
    examples: list[EncodedExample] = []
    truncated: list[int] = []
    example_count = token_count = character_count = dropped = skipped = 0
    for conversation in read_conversations(path):
        example_count += 1
        encoded = encode_conversation(tokenizer, conversation, max_seq_len)
        character_count += conversation.characters
        skipped += conversation.skipped_non_text_parts
        if encoded.truncated:
            truncated.append(example_count)
        if encoded.trained_token_count == 0:
            dropped += 1  # its answer starts beyond max_seq_len: nothing left to learn
            continue
        token_count += len(encoded.input_ids)
        examples.append(encoded)
    if example_count == 0:
        raise EmptyDatasetError(path, "the file holds no examples")
    if not examples:
        raise EmptyDatasetError(
            path, f"every example's answer starts beyond max_seq_len={max_seq_len} tokens; raise max_seq_len"
        )
    return EncodedDataset(
        examples=examples,
        example_count=example_count,
        token_count=token_count,
        character_count=character_count,
        truncated_indices=truncated,
        dropped_count=dropped,
        skipped_non_text_parts=skipped,
    )


def describe_data(train_set: EncodedDataset, validation_set: EncodedDataset | None, request: TrainRequest) -> DataStats:
    """What the job will train on and what it costs (billable tokens = dataset tokens x epochs)."""
    steps_per_epoch = math.ceil(len(train_set.examples) / request.batch_size)
    return DataStats(
        example_count=train_set.example_count,
        step_count=steps_per_epoch * request.epochs,
        total_billable_tokens=train_set.token_count * request.epochs,
        total_tuning_characters=train_set.character_count,
        truncated_example_count=len(train_set.truncated_indices),
        truncated_example_indices=list(train_set.truncated_indices),
        skipped_non_text_part_count=train_set.skipped_non_text_parts,
        dropped_example_count=train_set.dropped_count,
        validation_example_count=len(validation_set.examples) if validation_set else 0,
    )


def make_trainable(model: Any, request: TrainRequest) -> Any:
    """Wrap ``model`` for training: LoRA adapters, or every weight when ``full_finetune``."""
    if request.full_finetune:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model
    if request.init_adapter_dir is not None:
        # Continuous tuning: keep training the parent's adapter (its LoRA rank and norm included).
        return PeftModel.from_pretrained(model, str(request.init_adapter_dir), is_trainable=True)
    return get_peft_model(model, lora_config(request.lora_rank))


def lora_config(rank: int) -> Any:
    """The LoRA configuration every local job uses (also used by the TRL benchmark)."""
    return LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules="all-linear",
        modules_to_save=list(EXTRA_TRAINED_MODULES),
        bias="none",
        task_type="CAUSAL_LM",
    )


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


def collate(examples: Sequence[EncodedExample], pad_id: int) -> Batch:
    """Right-pad to the longest example of the batch (never to a fixed length)."""
    longest = max(len(example.input_ids) for example in examples)
    input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
        attention_mask[row, :length] = 1
        labels[row, :length] = torch.tensor(example.labels, dtype=torch.long)
    return Batch(input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def batch_loss(model: Any, batch: Batch, dtype: torch.dtype | None) -> tuple[torch.Tensor, int, int]:
    """Mean next-token loss over learned positions, plus (correct argmax predictions, positions).

    Only positions whose next token is learned are projected onto the vocabulary: the LM head
    is a large part of a small model's compute and prompt positions would be thrown away.
    """
    learned_next = batch.labels[:, 1:] != IGNORE_INDEX
    keep = torch.zeros_like(batch.labels, dtype=torch.bool)
    keep[:, :-1] = learned_next
    targets = batch.labels[:, 1:][learned_next]
    with _autocast(dtype):
        output = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            logits_to_keep=keep,
            use_cache=False,
        )
    logits = output.logits
    if logits.dim() == 3:  # a model that ignores a mask-shaped logits_to_keep
        logits = logits[keep]
    logits = logits.float()
    loss = F.cross_entropy(logits, targets)
    correct = int((logits.detach().argmax(dim=-1) == targets).sum())
    return loss, correct, int(targets.numel())


def evaluate(
    model: Any,
    examples: Sequence[EncodedExample],
    request: TrainRequest,
    pad_id: int,
    stop_requested: Callable[[], bool],
    *,
    completed_steps: int,
) -> tuple[float, float]:
    """Token-weighted loss and next-token accuracy over ``examples`` (no gradients)."""
    dtype = autocast_dtype(request.precision)
    total_loss = 0.0
    total_correct = total_count = 0
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(examples), request.batch_size):
                if stop_requested():
                    raise TrainingCancelled(completed_steps)
                batch = collate(examples[start : start + request.batch_size], pad_id)
                loss, correct, count = batch_loss(model, batch, dtype)
                total_loss += float(loss) * count
                total_correct += correct
                total_count += count
    finally:
        model.train()
    return total_loss / total_count, total_correct / total_count


def save_checkpoint(model: Any, tokenizer: Any, request: TrainRequest, *, epoch: int, step: int) -> Checkpoint:
    """Save the epoch's adapter to ``output_dir/checkpoints/epoch-N`` (atomically)."""
    target = request.output_dir / CHECKPOINTS_DIR / f"epoch-{epoch}"
    staging = target.with_name(f".{target.name}.saving")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(staging))
    if request.full_finetune:  # a full model folder must load on its own
        tokenizer.save_pretrained(str(staging))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return Checkpoint(checkpoint_id=str(epoch), epoch=epoch, step=step, adapter_dir=target)


@contextlib.contextmanager
def _autocast(dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type="cpu", dtype=dtype):
        yield
