"""``VlmCaptioner``: windows in, one caption text per window out, from any image-text-to-text model
that transformers' auto classes load (``AutoProcessor`` + ``AutoModelForImageTextToText``).

- The prompt is IDA-VLM's ID-reference form as structured messages (``prompt.build_messages``),
  rendered by the model's own chat template; images go to the processor in the same order.
- Images are resized by the processor's own rules under a pixel budget (``max_pixels``): for
  processors with a pixel budget of their own (Qwen2-VL family) it is set to ``max_pixels``; for
  tiling processors (SmolVLM, Idefics3) the tile grid is capped so the tiles cover at most
  ``max_pixels``; fixed-size processors (Gemma 3, LLaVA) give every image the same token count.
- Generation is batched with left padding, greedy, and stops at the template's end of turn.
  The batch is sized to free GPU memory (halved on an out-of-memory error); on CPU it is 4.
- Where the model takes pre-encoded images, ID images are encoded once and reused
  (``features.ImageFeatures``).
"""
from __future__ import annotations

import copy
import hashlib
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from . import loading
from .features import ImageFeatures, image_key, supports_reuse
from .marks import assign_colours, draw_marks, legend
from .prompt import build_messages
from .window import TestFrame, VlmWindow

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 448 * 448     # 256 image tokens on Qwen2.5-VL, as IDA-VLM's 448 px input
CPU_BATCH = 4
MAX_AUTO_BATCH = 32
GPU_MEMORY_SHARE = 0.6             # of the free memory after loading, for one batch
_SENTINEL = "Q7xZ"                  # a reply text that no template contains


def _pil(pixels: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))


def _check_options(max_pixels: int = DEFAULT_MAX_PIXELS, **_) -> None:
    if max_pixels < 28 * 28:
        raise InputError(f"--vlm-max-pixels {max_pixels}: at least {28 * 28} pixels per image")


def _quiet_transformers() -> None:
    """transformers' advice stays out of the way; its loading bars show unless logging is quiet (-q)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if log.isEnabledFor(logging.WARNING):
        transformers.utils.logging.enable_progress_bar()
    else:
        transformers.utils.logging.disable_progress_bar()


def _device(device: str | None):
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"--device: {error}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA GPU is available (use --device cpu)")
    return resolved


class VlmCaptioner:
    """Captions windows with one model, loaded once.

    ``instruction`` ends prompts that show ID images, ``general_instruction`` those without
    (a shot where no cast member is likely). With ``mark_faces`` the test frames' face boxes
    are drawn in colours the prompt names.
    """

    def __init__(self, model: str | Path, instruction: str, general_instruction: str, *,
                 device: str | None = None, dtype=None, revision: str | None = None, **options):
        """``model``: a model folder or hub id; ``options``: those of ``_setup``."""
        import torch

        _check_options(**options)
        _quiet_transformers()
        device = _device(device)
        source = loading.resolve(model, revision)
        processor = loading.load_processor(source.folder)
        loaded = loading.load_model(source.folder, dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32),
                                    device)
        self._setup(processor, loaded, source, instruction, general_instruction, **options)

    @classmethod
    def from_model(cls, processor, model, instruction: str, general_instruction: str, *, name: str = "(in memory)",
                   **options) -> "VlmCaptioner":
        """A captioner over a processor and model built in memory (benchmarks with random weights)."""
        _check_options(**options)
        _quiet_transformers()
        self = cls.__new__(cls)
        digest = hashlib.sha256(model.config.to_json_string().encode()).hexdigest()
        self._setup(processor, model, loading.ModelSource(name, None, None, digest), instruction, general_instruction,
                    **options)
        return self

    def _setup(self, processor, model, source: loading.ModelSource, instruction: str, general_instruction: str, *,
               batch_size: int | None = None, max_new_tokens: int = 64, max_pixels: int = DEFAULT_MAX_PIXELS,
               mark_faces: bool = False, max_images: int = 8) -> None:
        self.instruction, self.general_instruction = instruction, general_instruction
        self.max_new_tokens, self.max_pixels, self.mark_faces = max_new_tokens, max_pixels, mark_faces
        self.source, self.processor, self.model = source, processor, model
        self.device = model.device
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.image_budget = self._set_image_budget()
        self.generation_config = self._generation_config()
        self.features = ImageFeatures(model, processor.image_processor) if supports_reuse(model) else None
        self.batch_size = batch_size or self._auto_batch_size(max_images)

    # ------------------------------------------------------------------ set-up

    def _set_image_budget(self) -> str:
        """Bound the image tokens per image with the image processor's own knobs."""
        ip = self.processor.image_processor
        size = dict(getattr(ip, "size", None) or {})
        kwargs = getattr(getattr(ip, "valid_kwargs", None), "__annotations__", {})
        if "max_pixels" in kwargs and "longest_edge" in size:        # Qwen2-VL family: a pixel count
            size["longest_edge"] = self.max_pixels
            size["shortest_edge"] = min(size.get("shortest_edge") or 0, self.max_pixels)
            ip.size = size
            return "max_pixels"
        tile = (getattr(ip, "max_image_size", None) or {}).get("longest_edge")
        if tile and "longest_edge" in size:                           # SmolVLM / Idefics3: tiles of `tile` px
            ip.size = {**size, "longest_edge": tile * max(1, math.isqrt(self.max_pixels) // tile)}
            return "tiles"
        return "fixed"

    def _generation_config(self):
        gc = copy.deepcopy(self.model.generation_config)
        eos = gc.eos_token_id if isinstance(gc.eos_token_id, list) else [gc.eos_token_id]
        eos = [*eos, self.tokenizer.eos_token_id, self._end_of_turn()]
        gc.eos_token_id = list(dict.fromkeys(int(e) for e in eos if e is not None))
        if not gc.eos_token_id:
            raise InputError("neither the tokenizer nor the chat template defines an end of turn", self.source.folder)
        pad = self.tokenizer.pad_token_id
        gc.pad_token_id = int(pad) if pad is not None else (gc.pad_token_id or gc.eos_token_id[0])
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token_id = gc.pad_token_id
        gc.do_sample, gc.num_beams, gc.max_new_tokens = False, 1, self.max_new_tokens
        return gc

    def _end_of_turn(self) -> int | None:
        """The special token the chat template closes an assistant turn with (e.g. <|im_end|>)."""
        turn = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": [{"type": "text", "text": _SENTINEL}]}]
        try:
            rendered = self.processor.apply_chat_template(turn, tokenize=False)
        except Exception:  # a template that refuses an assistant turn: the eos ids stand
            return None
        if _SENTINEL not in rendered:
            return None
        special = set(self.tokenizer.all_special_ids)
        after = self.tokenizer(rendered.split(_SENTINEL, 1)[1], add_special_tokens=False)["input_ids"]
        return next((int(i) for i in after if i in special), None)

    def _kv_bytes_per_token(self) -> int:
        text = self.model.config.get_text_config()
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        return 2 * text.num_hidden_layers * kv_heads * head_dim * self.model.dtype.itemsize

    def _auto_batch_size(self, max_images: int) -> int:
        """On GPU: as many windows of ``max_images`` images as fit in part of the free memory."""
        import torch

        if self.device.type != "cuda":
            return CPU_BATCH
        blank = np.full((448, 448, 3), 127, np.uint8)
        probe = self.messages(VlmWindow((), tuple(TestFrame(blank) for _ in range(max_images))))
        tokens = int(self._inputs([probe])["input_ids"].shape[1]) + self.max_new_tokens
        text = self.model.config.get_text_config()
        transient = self.model.dtype.itemsize * (4 * text.hidden_size + 3 * text.intermediate_size)
        per_window = tokens * (self._kv_bytes_per_token() + transient)
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(max(1, min(MAX_AUTO_BATCH, GPU_MEMORY_SHARE * free // per_window)))

    # ------------------------------------------------------------------ prompts

    def messages(self, window: VlmWindow) -> tuple[list[dict], list]:
        """The chat messages of one window and its images (PIL), in prompt order."""
        colours = assign_colours(window.frames) if self.mark_faces else {}
        frames = [draw_marks(f, colours) if colours else f.pixels for f in window.frames]
        names = [i.name for i in window.ids]
        instruction = self.instruction if names else self.general_instruction
        messages = build_messages(names, len(frames), instruction, legend(colours))
        return messages, [_pil(i.pixels) for i in window.ids] + [_pil(f) for f in frames]

    def prompt(self, window: VlmWindow) -> str:
        """The rendered prompt text (the template's own image placeholders, unexpanded)."""
        return self.processor.apply_chat_template(self.messages(window)[0], tokenize=False,
                                                  add_generation_prompt=True)

    def _inputs(self, prepared: list[tuple[list[dict], list]]):
        """Token ids and pixels of a batch of (messages, images), left-padded."""
        texts = [self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                 for messages, _ in prepared]
        images = [window_images for _, window_images in prepared]
        images = images if any(images) else None    # a batch of shots without keyframes
        bos = self.tokenizer.bos_token
        # The template already wrote BOS where the model wants one (as apply_chat_template(tokenize=True) does).
        add_special = not (bos and texts[0].startswith(bos))
        return self.processor(text=texts, images=images, padding=True, return_tensors="pt",
                              add_special_tokens=add_special)

    # ------------------------------------------------------------------ generation

    def caption(self, windows: Sequence[VlmWindow]) -> list[str]:
        """One decoded answer per window (special tokens removed), in order."""
        import torch

        order = sorted(range(len(windows)), key=lambda i: -windows[i].image_count)   # similar lengths together
        answers: dict[int, str] = {}
        start = 0
        while start < len(order):
            chunk = order[start:start + self.batch_size]
            try:
                texts = self._generate([windows[i] for i in chunk])
            except torch.cuda.OutOfMemoryError as error:
                if self.batch_size == 1:
                    raise InputError("out of GPU memory for a single window; lower --vlm-max-pixels "
                                     "or --max-images") from error
                self.batch_size = max(1, self.batch_size // 2)
                log.warning("out of GPU memory: batches of %d windows from now on", self.batch_size)
                torch.cuda.empty_cache()
                continue
            answers.update(zip(chunk, texts))
            start += len(chunk)
        return [answers[i] for i in range(len(windows))]

    def _generate(self, windows: list[VlmWindow]) -> list[str]:
        import torch

        prepared = [self.messages(w) for w in windows]
        inputs = self._inputs(prepared)
        extra = {}
        if self.features is not None:
            try:
                extra = {"mm_encoder_outputs": self._encoded(windows, prepared, inputs)}
            except NotImplementedError as reason:
                log.info("%s: images are encoded with every window (%s)", self.source.model, reason)
                self.features = None
        if extra:
            inputs = {k: v for k, v in inputs.items() if not k.startswith("pixel_")}
        inputs = {k: v.to(self.device, dtype=self.model.dtype) if torch.is_floating_point(v) else v.to(self.device)
                  for k, v in dict(inputs).items()}
        with torch.inference_mode():
            output = self.model.generate(**inputs, **extra, generation_config=self.generation_config)
        new = output[:, inputs["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def _encoded(self, windows: list[VlmWindow], prepared: list[tuple[list[dict], list]], inputs):
        """Pre-encoded images of a batch in prompt order: ID images from the cache, test frames now
        (from the pixels the processor already made for the batch, where they can be cut out)."""
        ids, frames, frame_positions, position = [], [], [], 0
        for window, (_, images) in zip(windows, prepared):
            ids += [(image_key(i.pixels), image) for i, image in zip(window.ids, images)]
            frames += images[len(window.ids):]
            frame_positions += range(position + len(window.ids), position + len(images))
            position += len(images)
        id_features = iter(self.features.ids(ids))
        frame_features = iter(self.features.encode_selected(inputs, frame_positions, position, frames))
        ordered = []
        for window in windows:
            ordered += [next(id_features) for _ in window.ids] + [next(frame_features) for _ in window.frames]
        return self.features.assemble(ordered)

    def settings(self) -> dict:
        """What identifies this captioner's output (the JSON's ``engine``)."""
        import transformers

        return {"model": self.source.model, "model_type": self.model.config.model_type,
                "revision": self.source.revision, "config_sha256": self.source.config_sha256,
                "transformers": transformers.__version__, "dtype": str(self.model.dtype).replace("torch.", ""),
                "device": str(self.device), "decoding": "greedy", "max_new_tokens": self.max_new_tokens,
                "batch_size": self.batch_size, "max_pixels": self.max_pixels, "image_budget": self.image_budget,
                "id_images_encoded_once": self.features is not None, "mark_faces": self.mark_faces,
                "instruction": self.instruction}
