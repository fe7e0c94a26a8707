"""``movieid train``: visual instruction tuning of IDA-VLM with ID references.

The paper's recipe by default (the ViT frozen; the LLM, the resampler and the ID-Former fully
tuned; AdamW with beta2 0.95 and weight decay 0.1; 1 % linear warm-up then cosine; bf16 compute
with float32 master weights; max length 2048), or LoRA adapters through peft. One process, or one
per GPU under torchrun with FSDP2. Every ``save_every`` steps the run saves a state it resumes from
after a kill; at the end it writes a checkpoint in the published layout.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from tqdm import tqdm

from ..errors import MovieIdError
from ..models.ida_vlm import IdaVlm
from ..models.ida_vlm.config import IdaVlmConfig
from ..models.ida_vlm.loading import ID_FORMER_PREFIX, resolve_checkpoint, weight_files
from ..models.ida_vlm.tokenizer import QwenTokenizer
from ..models.ida_vlm.training import (LORA_TARGETS, LossModule, add_lora, enable_gradient_checkpointing,
                                       lora_config, master_weights_in_fp32, set_full_tuning, with_zero_id_former)
from . import distributed, state
from .data import LoadFailure, MicroBatches, Sample, draw_order, load_samples, read_stage, report_problems
from .distributed import Processes
from .export import export_checkpoint

log = logging.getLogger(__name__)

RUN_CONFIG = "train_config.json"
MAX_DRAWS = 10_000_000
LOG_FILE = "train_log.jsonl"
# Options that change what is trained: a resumed run must have the same ones.
_RUN_IDENTITY = ("model", "data", "data_root", "variant", "lora", "lora_rank", "lora_alpha", "lora_dropout",
                 "lora_targets", "steps", "epochs", "lr", "batch_size", "micro_batch_size", "weight_decay",
                 "warmup", "max_length", "max_grad_norm", "seed")


@dataclass(frozen=True)
class TrainOptions:
    model: str
    data: Path
    output: Path
    variant: str = "base"
    lora: bool = False
    lora_rank: int = 64
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS
    steps: int | None = None
    epochs: float | None = None          # default 1 when steps is not given
    lr: float | None = None              # default 5e-6 (full, the paper's), 1e-4 (LoRA)
    batch_size: int = 8                  # samples per optimizer step, over all processes
    micro_batch_size: int | None = None  # samples per forward in each process (default: no accumulation)
    weight_decay: float = 0.1
    warmup: float = 0.01                 # fraction of the steps
    max_length: int | None = None        # default: the checkpoint's seq_length (2048)
    max_grad_norm: float = 1.0
    save_every: int = 250
    seed: int = 0
    data_root: Path | None = None
    strict: bool = False
    checkpoint_layers: int | None = None  # LLM blocks recomputed in backward: None all, 0 none
    device: str | None = None
    workers: int = 2
    keep_state: bool = False

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.lora else 5e-6)

    def identity(self) -> dict:
        values = dataclasses.asdict(self)
        return {key: (str(Path(values[key]).resolve()) if key in ("data", "data_root") and values[key] else
                      list(values[key]) if isinstance(values[key], tuple) else values[key])
                for key in _RUN_IDENTITY}


@dataclass(frozen=True)
class Plan:
    """How the samples of a run are cut: ``steps`` optimizer steps of ``batch_size`` samples, each
    split over the processes and into ``accumulation`` micro-batches of ``micro_batch_size``."""

    steps: int
    batch_size: int
    micro_batch_size: int
    accumulation: int
    warmup_steps: int

    @classmethod
    def make(cls, options: TrainOptions, n_samples: int, world: int) -> "Plan":
        batch = options.batch_size
        if batch % world:
            raise MovieIdError(f"--batch-size {batch} does not split over {world} processes")
        micro = options.micro_batch_size or batch // world
        if (batch // world) % micro:
            raise MovieIdError(f"--micro-batch-size {micro} does not divide the {batch // world} samples "
                               f"each of the {world} processes takes per step")
        steps = options.steps or math.ceil((options.epochs or 1.0) * n_samples / batch)
        if steps * batch > MAX_DRAWS:   # the sample order is drawn up front, 16 bytes a draw
            raise MovieIdError(f"{steps} steps of {batch} samples are {steps * batch:,} samples drawn; "
                               f"one run draws at most {MAX_DRAWS:,} (use fewer steps or a smaller batch)")
        warmup = math.ceil(options.warmup * steps) if options.warmup > 0 else 0
        return cls(steps, batch, micro, batch // world // micro, warmup)


@dataclass
class Summary:
    output: Path
    steps: int
    resumed_from: int
    final_loss: float | None
    skipped: int
    files: list[Path] = field(default_factory=list)
    already_done: bool = False


def schedule(plan: Plan):
    """Learning-rate factor of step s: linear warm-up to 1 over ``warmup_steps``, then cosine to 0."""
    def factor(step: int) -> float:
        if step < plan.warmup_steps:
            return (step + 1) / (plan.warmup_steps + 1)
        progress = (step - plan.warmup_steps) / max(1, plan.steps - plan.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def train(options: TrainOptions, progress: bool | None = None) -> Summary:
    processes = distributed.start(options.device)
    try:
        summary = _train(options, processes, progress if processes.main else False)
        # every process leaves together: one that tore its process group down while another was
        # still writing the checkpoint aborted now and then (gloo: "terminate called without an
        # active exception"); after a failure no barrier, which the failed process would never reach
        distributed.barrier(processes)
        return summary
    finally:
        distributed.stop(processes)


def _train(options: TrainOptions, processes: Processes, progress: bool | None) -> Summary:
    output = Path(options.output)
    folder = resolve_checkpoint(options.model, options.variant)
    if output.resolve() == folder.resolve():
        raise MovieIdError("--output must not be the checkpoint being trained", output)
    tokenizer = QwenTokenizer.from_file(folder / "qwen.tiktoken")
    config = IdaVlmConfig.from_file(folder / "config.json")
    max_length = options.max_length or config.seq_length

    if output.exists() and not output.is_dir():
        raise MovieIdError("is not a folder (the output of a run is a folder)", output)
    finished = _check_run(output, options)
    if finished is not None:
        return Summary(output, finished, finished, None, 0, already_done=True)
    sources = read_stage(options.data, options.data_root)
    per_source, problems = load_samples(sources, tokenizer, max_length, progress)
    plan = Plan.make(options, sum(len(s) for s in per_source), processes.world)
    if options.strict:  # every process stops
        report_problems(problems, strict=True, where=None)
    order = draw_order([len(s) for s in per_source], [s.weight for s in sources],
                       plan.steps * plan.batch_size, options.seed)

    torch.manual_seed(options.seed)  # LoRA's initial adapters
    model = _prepare_model(options, folder, processes)
    module = LossModule(model)
    if processes.sharded:
        blocks = [*model.transformer.visual.transformer.resblocks, *model.transformer.h]
        distributed.shard(module, blocks, processes, bf16=processes.device.type == "cuda")
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": options.weight_decay},
         {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}],
        lr=options.learning_rate, betas=(0.9, 0.95), eps=1e-8, fused=processes.device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(plan))
    # the run's folder is made once its data, plan and model hold: a run refused for its options,
    # data or checkpoint leaves nothing behind (a train_config.json would tie the folder to a run
    # that never started)
    if processes.main:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MovieIdError(f"cannot make the run's folder ({exc.strerror or exc})", output) from None
        report_problems(problems, strict=False, where=output)  # one warning per run
        if not (output / RUN_CONFIG).is_file():
            (output / RUN_CONFIG).write_text(json.dumps(options.identity(), indent=2), encoding="utf-8")
    distributed.barrier(processes)
    saved = state.saved_steps(output)
    start = state.load(saved[-1][1], module, optimizer, scheduler, processes) if saved else 0
    if start:
        log.info("resuming %s from step %d", output, start)
    train_log = state.TrainLog(output / LOG_FILE, start, processes.main)

    loss = None
    loader = _micro_batches(per_source, order, plan, processes, start, tokenizer, config, options.workers)
    bar = tqdm(total=plan.steps, initial=start, desc="training", unit="step", dynamic_ncols=True,
               disable=True if progress is False else None)
    module.train()
    for step in range(start, plan.steps):
        began = time.perf_counter()
        samples = [per_source[s][i] for s, i in order[step * plan.batch_size:(step + 1) * plan.batch_size]]
        labels = sum(sample.n_labels for sample in samples)  # over all processes: known before any forward
        loss_sum = tokens = 0.0
        for _ in range(plan.accumulation):
            batch = next(loader).to(processes.device)
            with _autocast(processes):
                part, _ = module(batch)
            (part * (processes.world / labels)).backward()  # FSDP averages over processes
            loss_sum += float(part.detach())
            tokens += batch.n_tokens
        norm = torch.nn.utils.clip_grad_norm_(trainable, options.max_grad_norm)
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss = distributed.total(loss_sum, processes) / labels
        seconds = time.perf_counter() - began
        tokens = distributed.total(tokens, processes)
        train_log.write({"step": step + 1, "loss": round(loss, 6), "lr": lr, "grad_norm": round(norm, 6),
                         "tokens": int(tokens), "tokens_per_s": round(tokens / seconds, 1),
                         "seconds": round(seconds, 3)})
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if step + 1 < plan.steps and options.save_every and (step + 1) % options.save_every == 0:
            state.save(output, step + 1, module, optimizer, scheduler, processes)
    bar.close()
    loader.close()  # ends the loader's worker processes
    if options.keep_state and start < plan.steps:
        state.save(output, plan.steps, module, optimizer, scheduler, processes)
    files = export_checkpoint(module, model, options, folder, output, processes)
    if processes.main:
        (output / state.STATE).mkdir(exist_ok=True)
        (output / state.STATE / state.FINISHED).write_text(json.dumps({"step": plan.steps}))
        if not options.keep_state:
            for _, path in state.saved_steps(output):
                shutil.rmtree(path, ignore_errors=True)
    distributed.barrier(processes)
    return Summary(output, plan.steps, start, loss, len(problems), files)


def _check_run(output: Path, options: TrainOptions) -> int | None:
    """A run in ``output`` must have the same settings; returns its step if it already finished."""
    path = output / RUN_CONFIG
    identity = options.identity()
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(key for key in identity if before.get(key) != identity[key])
        if changed:
            raise MovieIdError(f"holds a run with other settings ({', '.join(changed)}); "
                               "use a new --output to start another run", output)
        done = output / state.STATE / state.FINISHED
        if done.is_file():
            return int(json.loads(done.read_text())["step"])
    elif state.saved_steps(output) or (output / LOG_FILE).is_file():
        raise MovieIdError("holds training files but no train_config.json; use a new --output", output)
    return None


def _prepare_model(options: TrainOptions, folder: Path, processes: Processes) -> IdaVlm:
    """The checkpoint on this process's device, with what trains set, float32 master weights and
    gradient checkpointing; an ``idf`` run from a base checkpoint gets a zero-started ID-Former."""
    has_id_former = any(key.startswith(ID_FORMER_PREFIX) for key in weight_files(folder))
    if options.variant == "base" and has_id_former:
        raise MovieIdError("checkpoint is the idf variant (it has ID-Former weights); train it with --variant idf",
                           folder)
    dtype = torch.bfloat16 if processes.device.type == "cuda" else torch.float32
    model = IdaVlm.from_pretrained(folder, variant="idf" if has_id_former else "base", dtype=dtype,
                                   device=processes.device)
    if options.variant == "idf" and not has_id_former:
        model = with_zero_id_former(model, seed=options.seed)
    if options.lora:
        add_lora(model, lora_config(options.lora_rank, options.lora_alpha, options.lora_dropout,
                                    options.lora_targets))
    else:
        set_full_tuning(model)
    if processes.sharded:
        model.float()  # FSDP shards float32 master weights; compute is gathered in bf16 on GPUs
    else:
        master_weights_in_fp32(model)
    enable_gradient_checkpointing(model, options.checkpoint_layers)
    return model


def _autocast(processes: Processes):
    """bf16 autocast on one GPU (frozen weights bf16, master weights float32; the weight casts are
    not cached, so no second copy of the weights is held). Not under FSDP (it gathers in bf16) nor
    on CPU (float32 throughout)."""
    if processes.device.type != "cuda" or processes.sharded:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)


def _micro_batches(per_source: list[list[Sample]], order, plan: Plan, processes: Processes, start: int,
                   tokenizer: QwenTokenizer, config: IdaVlmConfig, workers: int) -> Iterator:
    """This process's micro-batches from step ``start`` on, loaded ahead by ``workers`` processes."""
    share = plan.batch_size // processes.world
    groups = []
    for step in range(start, plan.steps):
        first = step * plan.batch_size + processes.rank * share
        mine = [per_source[s][i] for s, i in order[first:first + share]]
        groups += [mine[k:k + plan.micro_batch_size] for k in range(0, share, plan.micro_batch_size)]
    dataset = MicroBatches(groups, tokenizer, config.visual.image_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                                         prefetch_factor=2 if workers else None, persistent_workers=False)
    for item in loader:
        if isinstance(item, LoadFailure):
            raise MovieIdError(item.problem, item.path)
        yield item
