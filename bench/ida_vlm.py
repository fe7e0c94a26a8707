"""GPU benchmark of the native IDA-VLM at full size (random bf16 weights, no checkpoint), with a
transformers Qwen2-VL-7B-size peer.

A shot is a window of 3 ID images (the cast, precomputed once per film) + 5 test frames (640x360
RGB arrays), 48 new tokens (EOS ignored so every shot costs the same), greedy:
(a) naive: one shot per ``generate`` call, the cast re-encoded every time;
(b) engine, batch 16 (the earlier tables' setting);
(c) engine, the batch it picks from free GPU memory (``batch_size=None``), the main figure;
(d) ``--peer``: a Qwen2-VL-7B-size model from its published config (random weights) through
    transformers ``generate()``, batch 8, the same 8 images of 256 visual tokens a sample.
Then where a batch of 64 goes (PIL preprocessing, vision, prefill, decode steps; the decode with
the shared prefix read once per row instead, without CUDA graphs, and with torch's kernels instead
of the Triton decode kernels) and the SDPA backends on the model's attention shapes. First of
all, the Triton decode kernels' keys a step, warps and pipeline stages are swept on one layer's
decode attention at the engine's batch (``decode_sweep``), against torch's kernels, and the
fastest are used.

    python bench/ida_vlm.py [--variants base idf] [--peer] [--profile] [--json PATH]
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

from movieid.models.ida_vlm import IdaVlm, Request, RoleImage, build_id_query  # noqa: E402
from movieid.models.ida_vlm import decode_attention, fused, language  # noqa: E402
from movieid.models.ida_vlm.config import IdaVlmConfig  # noqa: E402
from movieid.models.ida_vlm.images import resize, resize_all  # noqa: E402
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
# Qwen2-VL-7B-Instruct's published config.json (the sizes that set the cost).
QWEN2_VL_7B = {
    "text_config": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                    "num_attention_heads": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-6,
                    "max_position_embeddings": 32768,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}},
    "vision_config": {"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "num_heads": 16, "mlp_ratio": 4,
                      "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "hidden_act": "quick_gelu"},
    "image_token_id": 151655, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
}
CAST = ["Alice", "Bob", "Carol"]
INSTRUCTION = "and describe their content."
TESTS_PER_SHOT = 5


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
    return randomise(model, torch.bfloat16, torch.device("cuda")).eval()


def randomise(model: IdaVlm, dtype: torch.dtype, device: torch.device) -> IdaVlm:
    """A model built on meta, materialised on ``device`` with random weights (seed 0): biases 0,
    norm weights 1, everything else N(0, 0.02)."""
    model = model.to(dtype).to_empty(device=device).requires_grad_(False)
    generator = torch.Generator(device=device).manual_seed(0)
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


def ms_per_call(fn, repeat: int = 10) -> float:
    """Milliseconds a call of ``fn`` takes on the GPU, after one call to warm up."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeat


def measure(label: str, fn, shots: int, warmup=None, **extra) -> dict:
    (warmup or fn)()  # kernel selection, allocator
    torch.cuda.reset_peak_memory_stats()
    seconds, _ = timed(fn)
    peak = torch.cuda.max_memory_allocated()
    row = {"path": label, "shots": shots, "seconds": seconds, "shots_per_s": shots / seconds,
           "peak_gib": peak / 2**30, "peak_gb": peak / 1e9, **extra}
    print(f"{label}: {shots / seconds:.2f} shots/s, peak {peak / 1e9:.1f} GB", flush=True)
    return row


def bench_variant(variant: str, args, tokenizer: QwenTokenizer) -> list[dict]:
    model = random_model(variant, tokenizer)
    query = build_id_query(CAST, TESTS_PER_SHOT, INSTRUCTION)
    cast_pictures = [RoleImage(image, "id") for image in images(1, 3, (320, 240))]
    frames = images(2, 64, (360, 640))

    def window(k: int) -> list[RoleImage]:
        return [RoleImage(frames[(TESTS_PER_SHOT * k + j) % len(frames)], "test") for j in range(TESTS_PER_SHOT)]

    def shots(cast: list[RoleImage], count: int, start: int = 0) -> list[Request]:
        return [Request(query, [*cast, *window(k)]) for k in range(start, start + count)]

    new = dict(max_new_tokens=args.new_tokens, ignore_eos=True)

    def naive():
        return [model.generate(shots(cast_pictures, 1, k), **new) for k in range(args.naive_shots)]

    def engine(count: int, batch_size: int | None):
        cast = model.precompute(cast_pictures)  # once per film
        return model.generate(shots(cast, count), batch_size=batch_size, **new)

    cast = model.precompute(cast_pictures)
    picked = model.batch_size_for(shots(cast, 512), args.new_tokens)
    count = max(64, picked)
    print(f"{variant}: the engine picks batches of {picked} rows", flush=True)
    sweep = {}
    if decode_attention.available(model.device):
        sweep = {"path": f"{variant} decode attention sweep", **decode_sweep(picked)}
        torch.cuda.empty_cache()
    warm = lambda: model.generate(shots(cast, 16), max_new_tokens=4, ignore_eos=True)  # noqa: E731
    compile_s, _ = timed(warm)  # the first call compiles the fused pointwise kernels
    print(f"first batch (compiling the fused kernels): {compile_s:.1f} s", flush=True)
    rows = [measure(f"{variant} (a) naive: 1 shot/call, cast re-encoded", naive, args.naive_shots),
            measure(f"{variant} (b) engine: batch 16, cast cached", lambda: engine(64, 16), 64, warm),
            measure(f"{variant} (c) engine: batch it picks ({picked}), cast cached", lambda: engine(count, None),
                    count, warm, batch=picked)]
    if fused.available(model.device):
        rows.append(eager_pointwise(lambda: measure(
            f"{variant} (c') the same, pointwise steps eager (not fused)", lambda: engine(count, None), count, warm,
            batch=picked)))
        same = [a.token_ids == b.token_ids for a, b in zip(engine(64, 16), eager_pointwise(lambda: engine(64, 16)))]
        rows[-1]["answers_equal_to_fused"] = f"{sum(same)} of {len(same)}"
        print(f"bf16 answers, fused = eager pointwise: {sum(same)} of {len(same)}", flush=True)
    if sweep:
        rows.append(sweep)
    try:  # the decode step at the batch the engine picks: (prompt + 48 steps) - (prompt + 1 step)
        batch = shots(cast, picked)
        one = timed(lambda: model.generate(batch, max_new_tokens=1, ignore_eos=True, batch_size=picked))[0]
        full = timed(lambda: model.generate(batch, batch_size=picked, **new))[0]
        rows.append({"path": f"{variant} engine batch-{picked} prompt and decode", "rows": picked,
                     "prompt_s": one, "decode_step_ms": 1000 * (full - one) / (args.new_tokens - 1), "total_s": full})
        print(json.dumps(rows[-1]), flush=True)
    except Exception as error:  # diagnostics: report, keep the rows above
        print(f"batch-{picked} split failed: {type(error).__name__}: {error}", flush=True)
    try:
        rows.append(breakdown(model, variant, shots(cast, 64), args))
    except Exception as error:  # diagnostics: report, keep the rows above
        print(f"breakdown failed: {type(error).__name__}: {error}", flush=True)
    if args.profile:
        rows.append(profile(model, shots(cast, 48)))
        rows.append(eager_pointwise(lambda: profile(model, shots(cast, 48))) | {"pointwise": "eager"})
    model = None  # the closures above share this cell: the weights go with it
    torch.cuda.empty_cache()
    return rows


def breakdown(model: IdaVlm, variant: str, batch: list[Request], args) -> dict:
    """Where one batch of 64 shots goes."""
    test_images = [image.image for request in batch for image in request.images if image.role == "test"]
    start = time.perf_counter()
    for image in test_images[:32]:
        resize(image, 448)
    pil_one = (time.perf_counter() - start) / 32
    start = time.perf_counter()
    resize_all(test_images, 448)
    pil_threads = (time.perf_counter() - start) / len(test_images)
    with torch.inference_mode(), language.attention_kernels():
        vision, _ = timed(lambda: model._image_tokens([request.images for request in batch]))
        visual = model.transformer.visual
        pixels = model._pixels(test_images[:64])
        vit, _ = timed(lambda: visual.patch_features(pixels))
    one = lambda **kw: timed(lambda: model.generate(batch, max_new_tokens=1, ignore_eos=True, batch_size=64, **kw))[0]  # noqa: E731
    full = lambda **kw: timed(lambda: model.generate(batch, max_new_tokens=args.new_tokens, ignore_eos=True,  # noqa: E731
                                                     batch_size=64, **kw))[0]
    prefill = one()
    unshared_prefill = one(share_prefix=False)
    step = lambda total, first: 1000 * (total - first) / (args.new_tokens - 1)  # noqa: E731
    row = {"path": f"{variant} engine batch-64 breakdown", "prompt_tokens": len(chat_prompt(model.tokenizer, batch[0].query).ids),
           "pil_resize_ms_per_image_one_thread": 1000 * pil_one, "pil_resize_ms_per_image_threads": 1000 * pil_threads,
           "vision_s": vision, "vision_ms_per_test_image": 1000 * vision / len(test_images),
           "vit_ms_per_image_64": 1000 * vit / 64, "vision_plus_prefill_s": prefill,
           "unshared_vision_plus_prefill_s": unshared_prefill,
           "decode_step_ms": step(full(), prefill),
           "decode_step_ms_unshared": step(full(share_prefix=False), unshared_prefill),
           "decode_step_ms_no_cuda_graph": step(full(cuda_graphs=False), prefill),
           "decode_step_ms_torch_kernels": step(torch_kernels(full), prefill),
           "vision_plus_prefill_s_eager_pointwise": eager_pointwise(one),
           "decode_kernel": "triton" if decode_attention.available(model.device) else
           "memory-efficient (log-sum-exp)" if language.efficient_kernel_works(model.device) else "math",
           "sdpa_priority": [backend.name for backend in language.SDPA_PRIORITY]}
    print(json.dumps(row, indent=1), flush=True)
    return row


def switched_off(module, fn):
    """``fn()`` with ``module.available`` answering False: ``fused`` (the pointwise steps eager) or
    ``decode_attention`` (the decode step's attention in torch's kernels instead of Triton's)."""
    available = module.available
    module.available = lambda device: False
    try:
        return fn()
    finally:
        module.available = available


def eager_pointwise(fn):
    return switched_off(fused, fn)


def torch_kernels(fn):
    return switched_off(decode_attention, fn)


def decode_sweep(rows: int, prefix: int = 880, own: int = 1335, new: int = 48) -> dict:
    """One layer's decode attention at the model's shapes (32 heads of 128, bf16): ``rows`` rows
    sharing a ``prefix``, each with ``own`` columns plus ``new`` (left padding of up to 60), at the
    last step. Times the Triton kernels per keys a step, warps and stages, and torch's path; sets
    the fastest and returns the table (ms a call, GB/s of the cache read)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    capacity = -(-(own + new) // 16) * 16
    rand = lambda *shape: torch.randn(*shape, generator=g, device="cuda", dtype=torch.bfloat16)  # noqa: E731
    q, keys, values = rand(rows, 32, 1, 128), rand(rows, 32, capacity, 128), rand(rows, 32, capacity, 128)
    prefix_kv = language.KVCache([rand(1, 32, prefix, 128)], [rand(1, 32, prefix, 128)])
    first = torch.randint(0, 60, (rows,), generator=g, device="cuda")
    column = torch.tensor([own + new - 1], device="cuda")
    columns = torch.arange(capacity, device="cuda")
    bias = torch.where((columns >= first[:, None]) & (columns <= column), 0.0, float("-inf"))[:, None, None]
    context = language.Decode(language.KVCache([keys], [values]), column, bias, [(slice(0, rows), prefix_kv)], first)
    read = 2 * (rows * (own + new) + prefix) * 32 * 128 * 2   # bytes of keys and values a call must read
    ms = lambda fn: ms_per_call(fn, 20)  # noqa: E731

    attend = lambda: context.attend(0, q, keys[:, :, -1:], values[:, :, -1:])  # noqa: E731
    table = {"rows": rows, "torch_ms": torch_kernels(lambda: ms(attend)), "triton": []}
    defaults = decode_attention.BLOCK_N, decode_attention.ROWS_WARPS, decode_attention.ROWS_STAGES
    for block in (32, 64, 128):
        for warps in (1, 2, 4):
            for stages in (2, 3):
                decode_attention.BLOCK_N, decode_attention.ROWS_WARPS, decode_attention.ROWS_STAGES = block, warps, stages
                t = ms(attend)
                table["triton"].append({"block_n": block, "warps": warps, "stages": stages, "ms": t,
                                        "gb_s": read / t / 1e6, "default": (block, warps, stages) == defaults})
    best = min(table["triton"], key=lambda r: r["ms"])
    decode_attention.BLOCK_N, decode_attention.ROWS_WARPS, decode_attention.ROWS_STAGES = \
        best["block_n"], best["warps"], best["stages"]
    table["best"] = best
    table["default_ms"] = next(r["ms"] for r in table["triton"] if r["default"])
    table["torch_gb_s"] = read / table["torch_ms"] / 1e6
    print(f"decode attention, one layer, {rows} rows: torch {table['torch_ms']:.3f} ms; Triton defaults "
          f"{table['default_ms']:.3f} ms, best {best['ms']:.3f} ms (block {best['block_n']}, {best['warps']} warps, "
          f"{best['stages']} stages, {best['gb_s']:.0f} GB/s)", flush=True)
    return table


def sdpa_backends() -> dict:
    """Milliseconds per call of each SDPA backend on the model's shapes (random bf16)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right
    import torch.nn.functional as F

    def qkv(batch, heads, q_len, k_len, dim):
        g = torch.Generator(device="cuda").manual_seed(0)
        make = lambda n: torch.randn(batch, heads, n, dim, device="cuda", dtype=torch.bfloat16, generator=g)  # noqa: E731
        return make(q_len), make(k_len), make(k_len)

    cases = {"vit 64 images (1024 x 1024, 16 heads of 104)": (qkv(64, 16, 1024, 1024, 104), None),
             "prefill 6 rows (1335 after 880 shared, 32 heads of 128)": (qkv(6, 32, 1335, 2215, 128),
                                                                          causal_lower_right(1335, 2215))}
    out = {}
    for name, ((q, k, v), mask) in cases.items():
        for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
            try:
                with sdpa_kernel([backend]):
                    F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                    seconds, _ = timed(lambda: [F.scaled_dot_product_attention(q, k, v, attn_mask=mask) for _ in range(10)])
                out[f"{name}: {backend.name}"] = 100 * seconds
            except RuntimeError as error:
                out[f"{name}: {backend.name}"] = f"unsupported ({str(error).splitlines()[0][:80]})"
    print(json.dumps(out, indent=1), flush=True)
    return out


KERNEL_KINDS = [  # (kind, name fragments), first match wins
    ("decode attention (Triton)", ("_prefix_kernel", "_rows_kernel", "_combine_kernel")),
    ("fused pointwise (inductor)", ("triton_poi", "triton_red", "triton_per")),
    ("attention", ("flash", "fmha", "cudnn", "attention", "attn")),
    ("matrix products", ("gemm", "xmma", "cutlass", "nvjet", "cublas", "s16816", "wgmma")),
    ("copies", ("copy", "cat", "index", "fill", "memcpy", "memset")),
]


def profile(model: IdaVlm, batch: list[Request]) -> dict:
    """Where the GPU's time goes in one engine batch (vision, prompt and 1 new token): kernel
    time by kind and the top kernels, against the batch's wall time (the rest is the GPU idle)."""
    def run():
        model.generate(batch, max_new_tokens=1, ignore_eos=True, batch_size=len(batch))
    run()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        wall, _ = timed(run)
    kinds: dict[str, float] = {}
    kernels: dict[str, float] = {}
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = event.time_range.elapsed_us()
        name = event.name.lower()
        kind = next((k for k, parts in KERNEL_KINDS if any(part in name for part in parts)), "other pointwise")
        kinds[kind] = kinds.get(kind, 0.0) + us / 1e3
        kernels[event.name[:90]] = kernels.get(event.name[:90], 0.0) + us / 1e3
    busy = sum(kinds.values())
    row = {"path": f"profile of one batch of {len(batch)} shots (vision + prompt + 1 token)", "wall_ms": 1000 * wall,
           "kernel_ms": busy, "kinds_ms": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
           "top_kernels_ms": dict(sorted(kernels.items(), key=lambda kv: -kv[1])[:25])}
    print(json.dumps(row, indent=1), flush=True)
    return row


def bench_peer(args) -> dict:
    """Qwen2-VL-7B-size through transformers: random weights from the config on the GPU, pixel
    values already patchified on the GPU (the processor's CPU work is not counted)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    config = Qwen2VLConfig(**QWEN2_VL_7B)
    with torch.device("cuda"):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16).eval()
    batch, images_per_shot, grid = 8, 3 + TESTS_PER_SHOT, 32  # 448x448: 32x32 patches -> 256 tokens
    rng = np.random.default_rng(0)
    text = rng.integers(0, 150000, 150).tolist()
    image = [config.vision_start_token_id] + [config.image_token_id] * (grid * grid // 4) + [config.vision_end_token_id]
    ids = text[:20] + sum(([*image] + text[20 + 10 * k:30 + 10 * k] for k in range(images_per_shot)), []) + text[100:]
    input_ids = torch.tensor([ids] * batch, device="cuda")
    patch = 3 * config.vision_config.temporal_patch_size * config.vision_config.patch_size ** 2
    pixel_values = torch.randn(batch * images_per_shot * grid * grid, patch, device="cuda", dtype=torch.bfloat16)
    inputs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                  mm_token_type_ids=(input_ids == config.image_token_id).int(), pixel_values=pixel_values,
                  image_grid_thw=torch.tensor([[1, grid, grid]] * batch * images_per_shot, device="cuda"))
    run = lambda: [model.generate(**inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,  # noqa: E731
                                  do_sample=False) for _ in range(2)]
    with torch.inference_mode():
        row = measure(f"peer: Qwen2-VL-7B-size, transformers generate(), batch {batch}", run, 2 * batch,
                      prompt_tokens=len(ids))
    model = None  # the closures above share this cell: the weights go with it
    torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--naive-shots", type=int, default=8, help="windows for the naive path")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--variants", nargs="+", default=["base"], choices=["base", "idf"])
    parser.add_argument("--peer", action="store_true", help="also run the transformers Qwen2-VL-7B-size peer")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--profile", action="store_true", help="also print the top CUDA kernels of a batch")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/ida_vlm.py needs a CUDA GPU")
    machine = f"{torch.cuda.get_device_name()}, torch {torch.__version__}, Python {platform.python_version()}"
    print(f"machine: {machine}", flush=True)
    rows, backends = [], sdpa_backends()

    def save():  # after every part, so that a later failure keeps what was measured
        if args.json:
            args.json.write_text(json.dumps({"machine": machine, "args": vars(args) | {"json": str(args.json)},
                                             "sdpa_ms": backends, "rows": rows}, indent=2))

    tokenizer = byte_level_tokenizer()
    for variant in args.variants:
        rows += bench_variant(variant, args, tokenizer)
        save()
    if args.peer:
        try:
            rows.append(bench_peer(args))
        except Exception as error:  # the peer is a comparison: report, keep the rest
            print(f"peer failed: {type(error).__name__}: {error}", flush=True)
        save()

    print("\n| path | shots | seconds | shots/s | peak GPU memory |\n| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        if "shots" in row:
            print(f"| {row['path']} | {row['shots']} | {row['seconds']:.2f} | {row['shots_per_s']:.2f} | "
                  f"{row['peak_gib']:.1f} GiB ({row['peak_gb']:.1f} GB) |")


if __name__ == "__main__":
    main()
