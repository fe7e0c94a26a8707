"""GPU benchmark of the native IDA-VLM at full size (random bf16 weights, no checkpoint).

Windows of 3 ID + 5 test images, 48 new tokens each (EOS ignored so every shot costs the same).
(a) naive: one shot per call, cast images re-encoded every time;
(b) engine: 16 windows per call, cast encoded once with ``precompute`` and passed as EncodedImage
    in cast order, as the movieid engine does, so the prompt prefix up to the first test image is
    prefilled once per batch.

    python bench/ida_vlm.py [--shots 64] [--naive-shots 8] [--batch 16] [--variants base idf]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from movieid.models.ida_vlm import IdaVlm, build_id_query  # noqa: E402
from movieid.models.ida_vlm.config import IdaVlmConfig  # noqa: E402
from movieid.models.ida_vlm.prompt import chat_prompt  # noqa: E402
from movieid.models.ida_vlm.tokenizer import FULL_SIZE_ENDOFTEXT_ID, QwenTokenizer  # noqa: E402

# The published config.json of jiyatai/IDA-VLM (weights/model-base and model-idf).
FULL_CONFIG = {
    "hidden_size": 4096, "intermediate_size": 22016, "kv_channels": 128, "layer_norm_epsilon": 1e-06,
    "max_position_embeddings": 8192, "no_bias": True, "num_attention_heads": 32, "num_hidden_layers": 32,
    "rotary_emb_base": 10000, "rotary_pct": 1.0, "seq_length": 2048, "use_dynamic_ntk": True,
    "use_logn_attn": True, "vocab_size": 151936,
    "visual": {"heads": 16, "image_size": 448, "image_start_id": 151857, "layers": 48, "mlp_ratio": 4.9231,
               "output_dim": 4096, "patch_size": 14, "width": 1664},
}
CAST = ["Alice", "Bob", "Carol"]
INSTRUCTION = "and describe their content."
ROLES = ["id"] * 3 + ["test"] * 5


def byte_level_tokenizer() -> QwenTokenizer:
    """151643 ranks like the published file (so special ids are the published ones): the 256
    bytes plus unreachable fillers; text costs one token per byte, a little more than Qwen's BPE."""
    ranks = {bytes([b]): b for b in range(256)}
    ranks.update({b"\x00" + i.to_bytes(3, "big"): 256 + i for i in range(FULL_SIZE_ENDOFTEXT_ID - 256)})
    return QwenTokenizer(ranks)


def random_model(variant: str, tokenizer: QwenTokenizer) -> IdaVlm:
    """Full-size architecture, bf16 weights drawn directly on the GPU."""
    with torch.device("meta"):
        model = IdaVlm(IdaVlmConfig.from_dict(FULL_CONFIG), tokenizer, with_id_former=variant == "idf")
    model = model.to(torch.bfloat16).to_empty(device="cuda").eval().requires_grad_(False)
    generator = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif "ln_" in name and name.endswith("weight"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02, generator=generator)
    return model


def images(seed: int, count: int, shape: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for _ in range(count)]


def timed(fn) -> tuple[float, object]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


def measure(label: str, fn, shots: int) -> dict:
    fn()  # warm-up (kernel selection, allocator)
    torch.cuda.reset_peak_memory_stats()
    seconds, _ = timed(fn)
    peak = torch.cuda.max_memory_allocated()
    return {"path": label, "shots": shots, "seconds": seconds, "shots_per_s": shots / seconds,
            "peak_gib": peak / 2**30, "peak_gb": peak / 1e9}


def bench_variant(variant: str, args, tokenizer: QwenTokenizer) -> list[dict]:
    model = random_model(variant, tokenizer)
    query = build_id_query(CAST, 5, INSTRUCTION)
    cast = images(1, 3, (320, 240))
    frames = images(2, 40, (360, 640))
    window = lambda k: [frames[(5 * k + j) % len(frames)] for j in range(5)]  # noqa: E731
    generate = dict(max_new_tokens=args.new_tokens, ignore_eos=True)

    def naive():
        return [model.generate([(query, cast + window(k), ROLES)], **generate) for k in range(args.naive_shots)]

    def engine():
        encoded = model.precompute(cast, ["id"] * 3)  # once per film
        out = []
        for start in range(0, args.shots, args.batch):
            batch = [(query, encoded + window(k), ROLES) for k in range(start, min(start + args.batch, args.shots))]
            out += model.generate(batch, **generate)
        return out

    rows = [measure(f"{variant} (a) naive: 1 shot/call, cast re-encoded", naive, args.naive_shots),
            measure(f"{variant} (b) engine: batch {args.batch}, cast cached", engine, args.shots)]
    # Where the engine's time goes, per batch of windows.
    encoded = model.precompute(cast, ["id"] * 3)
    batch = [(query, encoded + window(k), ROLES) for k in range(args.batch)]
    vision, _ = timed(lambda: [model.encode_images(imgs, roles) for _, imgs, roles in batch])
    one, _ = timed(lambda: model.generate(batch, max_new_tokens=1, ignore_eos=True))
    unshared, _ = timed(lambda: model.generate(batch, max_new_tokens=1, ignore_eos=True, share_prefix=False))
    full, _ = timed(lambda: model.generate(batch, **generate))
    prompt_len = len(chat_prompt(model.tokenizer, query).ids)
    rows.append({"path": f"{variant} engine batch breakdown", "prompt_tokens": prompt_len,
                 "vision_s": vision, "prefill_plus_vision_s": one, "unshared_prefill_plus_vision_s": unshared,
                 "decode_step_ms": 1000 * (full - one) / max(args.new_tokens - 1, 1), "total_s": full})
    if args.profile:
        profile(model, batch)
    del model
    torch.cuda.empty_cache()
    return rows


def profile(model: IdaVlm, batch: list) -> None:
    """Diagnostics: the stages of one engine batch timed apart, then the top CUDA kernels."""
    from movieid.models.ida_vlm.images import preprocess
    visual = model.transformer.visual
    test_images = [imgs[3:] for _, imgs, _ in batch]
    pre, pixels = timed(lambda: [preprocess(imgs, 448, model.device) for imgs in test_images])
    with torch.inference_mode():
        vit, feats = timed(lambda: [visual.patch_features(p) for p in pixels])
        pool, _ = timed(lambda: [visual.output(visual.attn_pool(f)) for f in feats])
    print(f"per batch: preprocess {pre:.3f} s, ViT {vit:.3f} s, resampler {pool:.3f} s", flush=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        model.generate(batch, max_new_tokens=8, ignore_eos=True)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=64, help="windows for the engine path")
    parser.add_argument("--naive-shots", type=int, default=8, help="windows for the naive path")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--variants", nargs="+", default=["base"], choices=["base", "idf"])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--profile", action="store_true", help="also print a stage and kernel profile")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/ida_vlm.py needs a CUDA GPU")
    machine = f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {platform.python_version()}"
    print(f"machine: {machine}", flush=True)
    tokenizer = byte_level_tokenizer()
    rows = [row for variant in args.variants for row in bench_variant(variant, args, tokenizer)]

    print("\n| path | shots | seconds | shots/s | peak GPU memory |\n| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        if "shots" in row:
            print(f"| {row['path']} | {row['shots']} | {row['seconds']:.2f} | {row['shots_per_s']:.2f} | "
                  f"{row['peak_gib']:.1f} GiB ({row['peak_gb']:.1f} GB) |")
    for variant in args.variants:
        naive, engine = [r for r in rows if r["path"].startswith(variant) and "shots" in r]
        print(f"\n{variant}: engine / naive = {engine['shots_per_s'] / naive['shots_per_s']:.1f}x")
    for row in rows:
        if "vision_s" in row:
            print(f"{row['path']}: prompt {row['prompt_tokens']} tokens; vision {row['vision_s']:.2f} s, "
                  f"vision+prefill {row['prefill_plus_vision_s']:.2f} s (without prefix sharing "
                  f"{row['unshared_prefill_plus_vision_s']:.2f} s), decode {row['decode_step_ms']:.1f} ms/step, "
                  f"total {row['total_s']:.2f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": vars(args) | {"json": str(args.json)},
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
