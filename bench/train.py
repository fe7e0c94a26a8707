"""Training-step benchmark of the native IDA-VLM at full size (random weights, no checkpoint), with
the trainer's own code (``movieid.models.ida_vlm.training``): bf16 autocast, float32 master weights,
gradient checkpointing on every LLM block or on ``--checkpoint-layers`` of them, the frozen ViT without gradients, fused AdamW.

Each sample: 3 ID + 5 test images (448x448, 256 visual tokens each) in the published prompt,
and an answer that fills the sequence to ``--seq-len`` (8 images alone take 8 x 258 = 2064 tokens, so
the sequence is the prompt plus a 64-token answer when the prompt is longer). For LoRA (rank 64,
alpha 16, Qwen-VL's targets) and full tuning, batches grow until one no longer fits; each row is
the median of ``--repeat`` timed optimizer steps after one warm-up step.

Model FLOPs are counted, not measured (recomputation by checkpointing is not counted, as MFU
conventionally excludes it): per token, a linear layer costs 2N forward, 2N for its input
gradient wherever the gradient flows on (every LLM layer, in both modes) and 2N for its weight
gradient only when it trains (full: all LLM layers and the resampler; LoRA: the adapters, 6·r·(in+out)).
Causal attention costs 2·T²·d per layer forward and twice that backward. The LM head runs only on
the answer tokens (the loss positions). The ViT runs forward only (2N per patch plus 4·P²·w of
attention per layer); the resampler forward only under LoRA and 3x under full tuning. MFU is model
FLOPs / step time / the GPU's dense bf16 peak (H200: 989 TFLOP/s); the row also gives the share of
a measured 8192^3 bf16 matrix product's rate.

    python3 bench/train.py --json bench/out/train.json          # one CUDA GPU
    python bench/train.py --tiny                                # CPU smoke run of the same code
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from movieid.models.ida_vlm import IdaVlm, build_id_query  # noqa: E402
from movieid.models.ida_vlm.config import IdaVlmConfig  # noqa: E402
from movieid.models.ida_vlm.images import preprocess  # noqa: E402
from movieid.models.ida_vlm.tokenizer import QwenTokenizer  # noqa: E402
from movieid.models.ida_vlm.training import (LORA_TARGETS, LossModule, add_lora, build_example,  # noqa: E402
                                             collate, enable_gradient_checkpointing, lora_config,
                                             master_weights_in_fp32, set_full_tuning)

PEAK_BF16 = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12}  # dense bf16, datasheets
CAST = ["Alice", "Bob", "Carol"]
INSTRUCTION = "Describe in one or two sentences who is doing what, calling each person by name."
LORA_RANK, LORA_ALPHA = 64, 16.0


def build_model(tiny: bool, device: torch.device) -> IdaVlm:
    """Random weights in the published architecture (bf16 on GPU, float32 on CPU)."""
    if tiny:
        from tests.helpers.tiny_ida_vlm import TINY_CONFIG, tiny_ranks

        config, tokenizer = IdaVlmConfig.from_dict(TINY_CONFIG), QwenTokenizer(tiny_ranks())
    else:
        from ida_vlm import FULL_CONFIG, byte_level_tokenizer

        config, tokenizer = IdaVlmConfig.from_dict(FULL_CONFIG), byte_level_tokenizer()
    from ida_vlm import randomise

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device("meta"):
        model = IdaVlm(config, tokenizer)
    return randomise(model, dtype, device)


def make_batch(model: IdaVlm, batch: int, n_images: int, seq_len: int, seed: int):
    """``batch`` copies of one sample layout, each with its own random 640x360 frames."""
    tok = model.tokenizer
    n_id = min(3, n_images - 1)
    query = build_id_query(CAST[:n_id], n_images - n_id, INSTRUCTION)
    prompt = len(build_example(tok, [(query, "")]).ids) - 1
    answer = "a" * max(64, seq_len - prompt - 1)  # the byte-level tokenizer: one token a byte
    example = build_example(tok, [(query, answer)])
    rng = np.random.default_rng(seed)
    size = model.config.visual.image_size
    pixels = [preprocess([rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(n_images)],
                         size, model.device) for _ in range(batch)]
    return collate([example] * batch, pixels, tok.endoftext_id), example


def model_flops(config: IdaVlmConfig, mode: str, n_images: int, tokens: int, labels: int) -> float:
    """Model FLOPs of one sample's optimizer step (see the module docstring)."""
    h, layers, vocab, half = config.hidden_size, config.num_hidden_layers, config.vocab_size, config.intermediate_size // 2
    linear = layers * (3 * h * h + h * h + 3 * h * half)
    full = mode == "full"
    llm = (6 if full else 4) * linear * tokens + 3 * layers * 2 * tokens ** 2 * h
    llm += (6 if full else 4) * vocab * h * labels
    if not full:
        per_layer = {"attn.c_attn": (h, 3 * h), "attn.c_proj": (h, h), "mlp.w1": (h, half), "mlp.w2": (h, half)}
        llm += 6 * LORA_RANK * sum(a + b for t, (a, b) in per_layer.items() if t in LORA_TARGETS) * layers * tokens
    vis = config.visual
    patches, width, d, q = vis.grid ** 2, vis.width, vis.output_dim, 256
    vit = vis.layers * (2 * (4 * width * width + 2 * width * vis.mlp_width) * patches + 4 * patches ** 2 * width)
    resampler = 2 * (patches * width * d + q * d * d + 2 * patches * d * d + q * d * d + q * d * d) + 4 * q * patches * d
    return llm + n_images * (vit + (3 if full else 1) * resampler)


def prepare(model: IdaVlm, mode: str, checkpoint_layers: int | None):
    if mode == "lora":
        add_lora(model, lora_config(LORA_RANK, LORA_ALPHA, 0.05))
    else:
        set_full_tuning(model)
    master_weights_in_fp32(model)
    enable_gradient_checkpointing(model, checkpoint_layers)
    module = LossModule(model).train()
    trainable = [p for p in module.parameters() if p.requires_grad]
    fused = next(module.parameters()).device.type == "cuda"
    decay = [p for p in trainable if p.ndim >= 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}],
                                  lr=1e-5, betas=(0.9, 0.95), fused=fused)
    return module, trainable, optimizer


def step(module, trainable, optimizer, batch, device) -> float:
    sync(device)
    start = time.perf_counter()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if device.type == "cuda" \
        else torch.autocast("cpu", enabled=False)
    with autocast:
        loss, count = module(batch)
    (loss / count).backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - start


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device) -> float | None:
    """bf16 TFLOP/s of an 8192^3 matrix product (the ceiling a GEMM-bound step can approach)."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 2 * 8192 ** 3 * 10 / (time.perf_counter() - start)


def bench_mode(mode: str, layers: int | None, args, device, peak: float | None,
               measured: float | None) -> list[dict]:
    model = build_model(args.tiny, device)
    config = model.config
    checkpoint = config.num_hidden_layers if layers is None else min(layers, config.num_hidden_layers)
    try:
        module, trainable, optimizer = prepare(model, mode, layers)
    except torch.OutOfMemoryError:  # e.g. float32 master weights of a full tune on one GPU
        print(f"{mode}: the model and its trainable float32 copy do not fit", flush=True)
        del model
        gc.collect()
        torch.cuda.empty_cache()
        return [{"mode": mode, "checkpoint_layers": checkpoint, "batch": 0, "oom": True}]
    rows = []
    for size in args.batches:
        try:
            batch, example = make_batch(model, size, args.images, args.seq_len, seed=size)
            batch = batch.to(device)
            step(module, trainable, optimizer, batch, device)  # warm-up (and optimizer state)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            times = [step(module, trainable, optimizer, batch, device) for _ in range(args.repeat)]
        except torch.OutOfMemoryError:
            rows.append({"mode": mode, "checkpoint_layers": checkpoint, "batch": size, "oom": True})
            print(f"{mode}: batch {size} does not fit", flush=True)
            break
        finally:
            optimizer.zero_grad(set_to_none=True)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        seconds = statistics.median(times)
        tokens = len(example.ids)
        flops = size * model_flops(config, mode, args.images, tokens, example.n_labels)
        row = {"mode": mode, "checkpoint_layers": checkpoint, "batch": size, "tokens_per_sample": tokens, "images": args.images,
               "step_s": seconds, "tokens_per_s": size * tokens / seconds, "model_tflops": flops / 1e12,
               "achieved_tflop_s": flops / seconds / 1e12,
               "mfu": flops / seconds / peak if peak else None,
               "of_measured_matmul": flops / seconds / measured if measured else None,
               "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else None}
        rows.append(row)
        print(_line(row), flush=True)
    del module, optimizer, trainable, model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def _line(row: dict) -> str:
    if row.get("oom"):
        return f"| {row['mode']} | {row['checkpoint_layers']} | {row['batch']} | does not fit | | | | | |"
    pct = lambda v: "" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    peak = "" if row["peak_gib"] is None else f"{row['peak_gib']:.1f} GiB"
    return (f"| {row['mode']} | {row['checkpoint_layers']} | {row['batch']} | {row['tokens_per_sample']} | {row['step_s']:.3f} | "
            f"{row['tokens_per_s']:.0f} | {peak} | {row['achieved_tflop_s']:.1f} | {pct(row['mfu'])} | "
            f"{pct(row['of_measured_matmul'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    parser.add_argument("--batches", nargs="+", type=int, default=None,
                        help="batch sizes tried in order, a mode stopping at the first that does not fit "
                             "(default 1 2 4 8 16 32 64; --tiny: 1 2)")
    parser.add_argument("--checkpoint-layers", nargs="+", default=["all"],
                        help="LLM blocks recomputed in backward, one run per value: 'all' or a number "
                             "(0: no gradient checkpointing)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tiny test architecture on the CPU")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    args.batches = args.batches or ([1, 2] if args.tiny else [1, 2, 4, 8, 16, 32, 64])
    if args.tiny:
        device = torch.device("cpu")
        args.images, args.seq_len = min(args.images, 2), min(args.seq_len, 600)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        sys.exit("bench/train.py needs a CUDA GPU (or --tiny for a CPU smoke run)")
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    measured = matmul_rate(device)
    machine = f"{name}, torch {torch.__version__}, python {platform.python_version()}"
    print(f"machine: {machine}" + (f"; 8192^3 bf16 matmul {measured / 1e12:.0f} TFLOP/s" if measured else ""))
    print("\n| mode | checkpointed layers | batch | tokens/sample | step s | tokens/s | peak memory | model TFLOP/s | MFU | of matmul |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    layers = [None if v == "all" else int(v) for v in args.checkpoint_layers]
    rows = [row for mode in args.modes for n in layers for row in bench_mode(mode, n, args, device, peak, measured)]
    for mode in args.modes:
        fits = [r for r in rows if r["mode"] == mode and not r.get("oom")]
        if fits:
            best = max(fits, key=lambda r: r["tokens_per_s"])
            mfu = "" if best["mfu"] is None else f", MFU {100 * best['mfu']:.1f} %"
            print(f"{mode}: fastest: batch {best['batch']}, {best['checkpoint_layers']} layers checkpointed: "
                  f"{best['tokens_per_s']:.0f} tokens/s{mfu}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "matmul_tflop_s": measured and measured / 1e12,
                                         "peak_tflop_s": peak and peak / 1e12,
                                         "args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
