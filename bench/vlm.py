"""Benchmark of the vlm engine on Qwen2.5-VL-7B-Instruct at full size (random bf16 weights, no download).

Windows of 3 ID + 5 test images at 448x448 (256 image tokens each), 48 new tokens per shot
(``min_new_tokens`` = ``max_new_tokens``, so every shot costs the same whatever random weights say):
(a) naive: one window per ``generate()`` call, as transformers' documentation writes it (the images in
    the chat messages, ``apply_chat_template(tokenize=True)``, ``generate``): the cast re-encoded every shot;
(b) engine: ``VlmCaptioner.caption`` over all windows: left-padded batches sized to GPU memory (or
    ``--batch``), ID images encoded once, greedy.
Both paths get the same prompts (the engine's ID-reference messages). Each runs once as warm-up, then
once timed; peak is ``torch.cuda.max_memory_allocated`` over the timed run.

    python bench/vlm.py [--shots 128] [--naive-shots 16] [--batch N] [--json out.json]
    python bench/vlm.py --tiny --device cpu --shots 8 --naive-shots 2 --new-tokens 8   # check the script on CPU
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from movieid.engines.ida_vlm import GENERAL_INSTRUCTION, INSTRUCTION  # noqa: E402
from movieid.models.hf_vlm import IdImage, TestFrame, VlmCaptioner, VlmWindow  # noqa: E402
from tests.helpers.tiny_hf_vlm import QWEN_TEMPLATE  # noqa: E402  (the published chat template)

# The published config.json of Qwen/Qwen2.5-VL-7B-Instruct (architecture keys).
FULL_CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
    "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 128000,
    "max_window_layers": 28, "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": False,
    "use_cache": True, "use_sliding_window": False, "vocab_size": 152064,
    "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
    "image_token_id": 151655, "video_token_id": 151656,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
}
# --tiny: the same architecture, a few layers wide enough to run; special tokens right after the bytes.
TINY_CONFIG = {
    **FULL_CONFIG, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_window_layers": 2, "vocab_size": 300, "bos_token_id": 256, "eos_token_id": 258,
    "vision_start_token_id": 265, "vision_end_token_id": 266, "vision_token_id": 267, "image_token_id": 268,
    "video_token_id": 269, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
    "vision_config": {**FULL_CONFIG["vision_config"], "depth": 2, "hidden_size": 32, "intermediate_size": 64,
                      "num_heads": 2, "out_hidden_size": 64, "fullatt_block_indexes": [1]},
}
# The published tokenizer's added tokens, in id order from <|endoftext|> (151643 in the real one).
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
CAST = ["Alice", "Bob", "Carol"]


def processor_for(config: dict):
    """The real processor classes; a byte-level tokenizer whose special tokens sit at the config's ids
    (text costs one token per byte, a little more than Qwen's BPE: slightly pessimistic)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2_5_VLProcessor, Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    first = config["bos_token_id"]
    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    vocab.update({f"<unused_{i}>": i for i in range(len(vocab), first)})
    vocab.update({token: first + i for i, token in enumerate(SPECIALS)})
    assert vocab["<|image_pad|>"] == config["image_token_id"]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               extra_special_tokens=SPECIALS[1:])
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
                               tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_TEMPLATE)


def random_model(config: dict, device: torch.device, dtype: torch.dtype):
    """Random weights drawn where the model runs (no checkpoint)."""
    from transformers import AutoConfig, AutoModelForImageTextToText, GenerationConfig

    cfg = AutoConfig.for_model(**config)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(cfg, dtype=dtype)
    model.generation_config = GenerationConfig(bos_token_id=config["bos_token_id"], pad_token_id=config["bos_token_id"],
                                               eos_token_id=[config["eos_token_id"], config["bos_token_id"]])
    return model.eval().requires_grad_(False)


def windows(count: int, side: int) -> list[VlmWindow]:
    rng = np.random.default_rng(0)
    cast = [IdImage(name, rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for name in CAST]
    frames = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(40)]
    return [VlmWindow(tuple(cast), tuple(TestFrame(frames[(5 * k + j) % len(frames)]) for j in range(5)))
            for k in range(count)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(label: str, fn, shots: int, device: torch.device, warm_up: int) -> dict:
    fn(warm_up)  # kernel selection, allocator
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    fn(shots)
    sync(device)
    seconds = time.perf_counter() - start
    row = {"path": label, "shots": shots, "seconds": seconds, "shots_per_s": shots / seconds}
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        row |= {"peak_gib": peak / 2**30, "peak_gb": peak / 1e9}
    return row


def timed(fn, device: torch.device):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def breakdown(captioner: VlmCaptioner, batch: list[VlmWindow], device: torch.device) -> dict:
    """Where one engine batch goes: prompts (and face marks), the processor (tokens and pixels), image
    features (test frames; the cast is cached), and the whole ``_generate`` (all of these plus the LM)."""
    messages_s, prepared = timed(lambda: [captioner.messages(w) for w in batch], device)
    processor_s, inputs = timed(lambda: captioner._inputs(prepared), device)
    features_s = (timed(lambda: captioner._encoded(batch, prepared, inputs), device)[0]
                  if captioner.features is not None else 0.0)
    generate_s, _ = timed(lambda: captioner._generate(batch), device)
    return {"path": "engine batch breakdown", "windows": len(batch), "messages_s": messages_s,
            "processor_s": processor_s, "features_s": features_s, "generate_s": generate_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=128, help="windows for the engine path")
    parser.add_argument("--naive-shots", type=int, default=16, help="windows for the naive path")
    parser.add_argument("--batch", type=int, default=None, help="engine batch (default: sized to GPU memory)")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--side", type=int, default=448, help="ID and test images are side x side")
    parser.add_argument("--tiny", action="store_true", help="a tiny config: checks the script on CPU")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/vlm.py needs a CUDA GPU (or --tiny --device cpu)")
    import transformers

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    name = device.type if device.type != "cuda" else torch.cuda.get_device_name(device)
    machine = f"{name}, torch {torch.__version__}, transformers {transformers.__version__}, {platform.python_version()}"
    print(f"machine: {machine}", flush=True)
    config = TINY_CONFIG if args.tiny else FULL_CONFIG
    processor = processor_for(config)
    start = time.perf_counter()
    model = random_model(config, device, dtype)
    print(f"random {'tiny' if args.tiny else 'Qwen2.5-VL-7B'} model: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B "
          f"parameters, {dtype}, built in {time.perf_counter() - start:.1f} s", flush=True)
    captioner = VlmCaptioner.from_model(processor, model, INSTRUCTION, GENERAL_INSTRUCTION,
                                        name="Qwen2.5-VL-7B-Instruct config, random weights", batch_size=args.batch,
                                        max_new_tokens=args.new_tokens)
    captioner.generation_config.min_new_tokens = args.new_tokens
    shots = windows(max(args.shots, args.naive_shots), args.side)
    prompt_tokens = int(captioner._inputs([captioner.messages(shots[0])])["input_ids"].shape[1])

    def naive(count: int) -> list[str]:
        out = []
        for window in shots[:count]:
            messages, images = captioner.messages(window)
            pictures = iter(images)
            content = [{**c, "image": next(pictures)} if c["type"] == "image" else c for c in messages[0]["content"]]
            inputs = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                   tokenize=True, return_dict=True, return_tensors="pt")
            inputs = inputs.to(device, dtype=dtype)
            with torch.inference_mode():
                ids = model.generate(**inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                     do_sample=False)
            out += processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return out

    def engine(count: int) -> list[str]:
        if captioner.features is not None:
            captioner.features._ids.clear()     # the cast is encoded within the timed run
        return captioner.caption(shots[:count])

    rows = [measure("(a) naive: 1 window per generate(), cast re-encoded", naive, args.naive_shots, device, 2),
            measure(f"(b) engine: batch {captioner.batch_size}, cast encoded "
                    f"{'once' if captioner.features is not None else 'every window'}", engine, args.shots, device,
                    min(captioner.batch_size, args.shots))]
    ratio = rows[1]["shots_per_s"] / rows[0]["shots_per_s"]
    rows.append(breakdown(captioner, shots[:captioner.batch_size], device))

    print("\n| path | shots | seconds | shots/s | peak GPU memory |\n| --- | ---: | ---: | ---: | ---: |")
    for row in rows[:2]:
        peak = f"{row['peak_gib']:.1f} GiB ({row['peak_gb']:.1f} GB)" if "peak_gib" in row else "n/a (CPU)"
        print(f"| {row['path']} | {row['shots']} | {row['seconds']:.2f} | {row['shots_per_s']:.2f} | {peak} |")
    print(f"\nengine / naive = {ratio:.1f}x (target >= 3x); prompt {prompt_tokens} tokens per window; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB", flush=True)
    b = rows[2]
    print(f"one engine batch of {b['windows']}: prompts {b['messages_s']:.2f} s, processor {b['processor_s']:.2f} s, "
          f"image features {b['features_s']:.2f} s, generate (all of it) {b['generate_s']:.2f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": vars(args) | {"json": str(args.json)},
                                         "prompt_tokens": prompt_tokens, "engine": captioner.settings(),
                                         "ratio": ratio, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
