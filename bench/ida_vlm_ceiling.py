"""How fast the IDA-VLM engine could be on this GPU: the ceilings under ``bench/ida_vlm.py``'s figure.

Measured on the full-size model with random bf16 weights (``bench/ida_vlm.py``'s):
1. each matrix product of a prefill chunk at the engine's shapes (a chunk is 12 shots: 60 test
   images through the ViT, 12 x 1335 prompt positions through the LM), in TFLOP/s, against a
   square 8192 product: what the matrix work of one shot costs at best;
2. the fused rotary kernel at a chunk's shape, in TB/s;
3. one decode step at 76 rows (a CUDA graph) alone, and its kernels;
4. whether a decode on one CUDA stream hides under compute-bound work on another: 47 decode
   steps of 76 rows (thread 1, stream A) against three ViT passes of 60 images, then against a
   24-shot prompt pass (thread 2, stream B); the share of the decode's own time that the overlap
   saves (1: fully hidden, 0: the two run one after the other).

    python bench/ida_vlm_ceiling.py [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ida_vlm as bench  # noqa: E402
from ida_vlm import ms_per_call as ms  # noqa: E402

from movieid.models.ida_vlm import fused, language  # noqa: E402
from movieid.models.ida_vlm.generation import CudaGraphStep  # noqa: E402

CHUNK_IMAGES, CHUNK_POSITIONS = 60 * 1024, 12 * 1335  # one prefill chunk's ViT tokens and LM positions
PRODUCTS = {  # name: (M, K, N, bias), the weights as the model holds them
    "ViT in_proj": (CHUNK_IMAGES, 1664, 4992, True), "ViT out_proj": (CHUNK_IMAGES, 1664, 1664, True),
    "ViT c_fc": (CHUNK_IMAGES, 1664, 8192, True), "ViT c_proj": (CHUNK_IMAGES, 8192, 1664, True),
    "LM c_attn": (CHUNK_POSITIONS, 4096, 12288, True), "LM attn c_proj": (CHUNK_POSITIONS, 4096, 4096, False),
    "LM w1 (w2 the same)": (CHUNK_POSITIONS, 4096, 11008, False),
    "LM w1 and w2 as one product": (CHUNK_POSITIONS, 4096, 22016, False),
    "LM mlp c_proj": (CHUNK_POSITIONS, 11008, 4096, False), "square 8192": (8192, 8192, 8192, False),
}


def products() -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, device="cuda", dtype=torch.bfloat16, generator=g)  # noqa: E731
    rows = {}
    for name, (m, k, n, bias) in PRODUCTS.items():
        x, w, b = rand(m, k), rand(n, k), rand(n) if bias else None
        t = ms(lambda: F.linear(x, w, b))
        rows[name] = {"m": m, "k": k, "n": n, "ms": t, "tflop_s": 2 * m * k * n / t / 1e9}
    print("\n| product (M x K x N) | ms | TFLOP/s |\n| --- | ---: | ---: |")
    for name, row in rows.items():
        print(f"| {name} ({row['m']} x {row['k']} x {row['n']}) | {row['ms']:.3f} | {row['tflop_s']:.0f} |")
    return rows


def rotary() -> dict:
    n = CHUNK_POSITIONS
    qkv = torch.randn(n, 3, 32, 128, device="cuda", dtype=torch.bfloat16)
    angles = torch.rand(n, 1, 1, 128, device="cuda") * 6
    cos, sin = angles.cos(), angles.sin()
    with torch.inference_mode():
        fused_ms = ms(lambda: fused.call(fused.rotary, qkv[:, :2], cos, sin))
        eager_ms = ms(lambda: fused.rotary(qkv[:, :2], cos, sin))
    moved = n * (2 * 32 * 128 * 2 * 2 + 2 * 128 * 4)  # q, k read and written; the float32 tables read
    row = {"fused_ms": fused_ms, "eager_ms": eager_ms, "fused_tb_s": moved / fused_ms / 1e9}
    print(f"\nrotary at {n} positions: fused {fused_ms:.3f} ms ({row['fused_tb_s']:.2f} TB/s), eager {eager_ms:.3f} ms")
    return row


def decode_and_overlap(model, shots) -> dict:
    config, lm = model.config, model.transformer
    rows, own, prefix = 76, 1335, 880
    capacity = -(-(own + 48) // 16) * 16
    cache = language.KVCache.allocate(config, rows, capacity, torch.bfloat16, "cuda")
    for t in cache.keys + cache.values:
        t.normal_()
    shared = language.KVCache.allocate(config, 1, prefix, torch.bfloat16, "cuda")
    inv_freq = language.inverse_frequencies(config, [1.0] * rows, "cuda")
    first = torch.zeros(rows, dtype=torch.long, device="cuda")
    column = torch.tensor([own], device="cuda")
    columns = torch.arange(capacity, device="cuda")
    bias = torch.where((columns[None] >= first[:, None]) & (columns[None] <= column), 0.0, float("-inf"))[:, None, None]
    token = torch.zeros(rows, dtype=torch.long, device="cuda")
    lengths = torch.full((rows,), own + prefix, device="cuda")

    def step():
        pos = language.positions_for(config, lengths[:, None], inv_freq, True, torch.bfloat16)
        context = language.Decode(cache, column, bias, [(slice(0, rows), shared)], first)
        return model.lm_head(lm(lm.wte(token)[:, None], pos, context)[:, -1]).float()

    stream_a, stream_b = torch.cuda.Stream(), torch.cuda.Stream()
    with torch.inference_mode(), language.attention_kernels():
        with torch.cuda.stream(stream_a):
            graph = CudaGraphStep(step)
            graph()
            graph()
        torch.cuda.synchronize()
        pixels = model._pixels([image.image for request in shots[:12] for image in request.images if image.role == "test"])

        def decode():
            with torch.inference_mode(), torch.cuda.stream(stream_a):
                for _ in range(47):
                    graph()
                    stream_a.synchronize()  # as the engine reads its stop flags each step

        def vit():
            with torch.inference_mode(), language.attention_kernels(), torch.cuda.stream(stream_b):
                for _ in range(3):
                    model.transformer.visual.patch_features(pixels)
                stream_b.synchronize()

        def prompt():
            with torch.inference_mode(), language.attention_kernels(), torch.cuda.stream(stream_b):
                model.generate(shots[:24], max_new_tokens=1, ignore_eos=True, batch_size=24)
                stream_b.synchronize()

        def wall(*fns) -> float:
            torch.cuda.synchronize()
            start = time.perf_counter()
            threads = [threading.Thread(target=fn) for fn in fns]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            torch.cuda.synchronize()
            return time.perf_counter() - start

        for fn in (decode, vit, prompt):
            wall(fn)
        alone = {"decode": wall(decode), "vit": wall(vit), "prompt": wall(prompt)}
        both = {"vit": wall(decode, vit), "prompt": wall(decode, prompt)}
        with torch.cuda.stream(stream_a):
            step()
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    step()
                torch.cuda.synchronize()
        step_ms = ms(lambda: (graph(), stream_a.synchronize()), 20)
    kernels: dict[str, float] = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels[event.name[:80]] = kernels.get(event.name[:80], 0.0) + event.time_range.elapsed_us() / 3e3
    row = {"decode_rows": rows, "decode_step_ms_graph": step_ms, "decode_step_kernel_ms": sum(kernels.values()),
           "decode_step_kernels_ms": dict(sorted(kernels.items(), key=lambda kv: -kv[1])[:12]),
           "alone_s": alone, "with_decode_s": both,
           "decode_hidden": {k: (alone["decode"] + alone[k] - both[k]) / alone["decode"] for k in both}}
    print(f"\ndecode step, {rows} rows: {step_ms:.2f} ms (graph), kernels {row['decode_step_kernel_ms']:.2f} ms")
    print("\n| beside 47 decode steps of 76 rows | alone s | decode alone s | together s | decode hidden |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    for k, label in (("vit", "3 ViT passes of 60 images"), ("prompt", "a 24-shot prompt pass")):
        print(f"| {label} | {alone[k]:.3f} | {alone['decode']:.3f} | {both[k]:.3f} | {row['decode_hidden'][k]:.0%} |")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/ida_vlm_ceiling.py needs a CUDA GPU")
    out = {"machine": f"{torch.cuda.get_device_name()}, torch {torch.__version__}",
           "products": products(), "rotary": rotary()}
    model = bench.random_model("base", bench.byte_level_tokenizer())
    query = bench.build_id_query(bench.CAST, bench.TESTS_PER_SHOT, bench.INSTRUCTION)
    cast = model.precompute([bench.RoleImage(image, "id") for image in bench.images(1, 3, (320, 240))])
    frames = bench.images(2, 64, (360, 640))
    shots = [bench.Request(query, [*cast, *(bench.RoleImage(frames[(5 * k + j) % 64], "test") for j in range(5))])
             for k in range(24)]
    model.generate(shots[:16], max_new_tokens=4, ignore_eos=True)  # compiles the fused steps
    out["decode"] = decode_and_overlap(model, shots)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
