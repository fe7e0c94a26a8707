"""``movieid train``: fine-tune IDA-VLM (registered in ``cli/main.py``)."""
from __future__ import annotations

from pathlib import Path

import click

from .common import FiniteFloat, common, echo, setup_logging

TRAIN_EPILOG = """\b
Examples:
  movieid train --model /models/IDA-VLM/weights/model-base --data stage2.yaml --output runs/s2
  movieid train --model runs/s2 --data samples.json --output runs/film --lora --epochs 3
  torchrun --nproc-per-node 8 -m movieid train --model ... --data stage1.yaml --output runs/s1
\b
--data is a JSON list of {"id", "conversations": [{"from": "user", "value": "Alice is
<img>a.jpg</img>\\n ..."}, {"from": "assistant", "value": "..."}]} (image paths relative to the
JSON file or --data-root), or a YAML stage config listing such files with mixing weights.
Bad samples are listed in OUTPUT/skipped.jsonl and left out (--strict: the run fails).
A killed run resumes from its last saved state when started again with the same options.
"""


@click.command("train", epilog=TRAIN_EPILOG)
@click.option("--model", required=True, help="Checkpoint to start from (folder in the published layout).")
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Samples (.json/.jsonl) or a YAML stage config.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Run folder: the trained checkpoint, train_log.jsonl, resume state.")
@click.option("--variant", type=click.Choice(["base", "idf"]), default="base", show_default=True,
              help="Model to train; idf from a base checkpoint starts with a zero ID-Former output.")
@click.option("--lora/--full", default=False, show_default=True,
              help="LoRA adapters (peft) on the LLM, or the paper's full tuning.")
@click.option("--lora-rank", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lora-alpha", type=FiniteFloat(0, min_open=True), default=16.0, show_default=True)
@click.option("--lora-dropout", type=FiniteFloat(0, 1, max_open=True), default=0.05, show_default=True)
@click.option("--lora-targets", default="attn.c_attn,attn.c_proj,mlp.w1,mlp.w2", show_default=True,
              help="LLM block modules that get adapters (comma-separated name endings).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimizer steps.")
@click.option("--epochs", type=FiniteFloat(0, min_open=True), default=None,
              help="Passes over the data (default 1 when --steps is not given).")
@click.option("--lr", type=FiniteFloat(0, min_open=True), default=None,
              help="Peak learning rate (default 5e-6 full, the paper's; 1e-4 LoRA).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Samples per optimizer step, over all processes.")
@click.option("--micro-batch-size", type=click.IntRange(min=1), default=None,
              help="Samples per forward pass in each process (gradient accumulation below --batch-size).")
@click.option("--max-length", type=click.IntRange(min=16), default=None,
              help="Longest sample in tokens (default: the checkpoint's seq_length, 2048).")
@click.option("--weight-decay", type=FiniteFloat(0), default=0.1, show_default=True)
@click.option("--warmup", type=FiniteFloat(0, 1), default=0.01, show_default=True,
              help="Fraction of the steps with linear warm-up (then cosine).")
@click.option("--save-every", type=click.IntRange(min=0), default=250, show_default=True,
              help="Save a resume state every N steps (0: only at the end).")
@click.option("--seed", type=int, default=0, show_default=True, help="Data order and ID-Former init.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder that image paths are relative to (default: each JSON file's folder).")
@click.option("--strict", is_flag=True, help="Fail on any bad sample instead of leaving it out.")
@click.option("--checkpoint-layers", type=click.IntRange(min=0), default=None,
              help="Recompute only the first N LLM blocks in the backward pass (default: all; 0: none). "
                   "Fewer is faster and takes more memory.")
@click.option("--device", default=None, help="torch device (default: this process's GPU, else cpu).")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Processes loading images ahead of the GPU.")
@click.option("--keep-state", is_flag=True, help="Keep the resume state, with one of the last step, after the run.")
@common
def train(verbose, quiet, lora_targets, **options):
    """Fine-tune IDA-VLM on ID-reference conversations; write a checkpoint in the published layout."""
    setup_logging(verbose, quiet)
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip())
    if not targets:
        raise click.UsageError("--lora-targets names no module")
    if options["steps"] and options["epochs"]:
        raise click.UsageError("give --steps or --epochs, not both")
    from movieid.training import TrainOptions
    from movieid.training import train as run

    summary = run(TrainOptions(lora_targets=targets, **options), progress=False if quiet else None)
    if quiet:
        return
    if summary.already_done:
        echo(f"{summary.output}: this run already finished ({summary.steps} steps)")
        return
    if summary.files:
        resumed = f", resumed at step {summary.resumed_from}" if summary.resumed_from else ""
        echo(f"{summary.output}: {summary.steps} steps{resumed}, final loss {summary.final_loss:.4f}"
                   if summary.final_loss is not None else f"{summary.output}: {summary.steps} steps{resumed}")
        if summary.skipped:
            echo(f"  {summary.skipped} bad samples left out (listed in {summary.output / 'skipped.jsonl'})")
