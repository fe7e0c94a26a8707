"""``IdaVlm``: the whole model (vision tower, ID-Former, Qwen-7B) and its public API."""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..images import ImageSource, load_rgb
from .config import IMAGE_TOKENS, IdaVlmConfig
from .errors import IdaVlmError
from .generation import (Generation, GenerationDefaults, Row, Sampling, alpha_for, generate_tokens,
                         plan_rows, rows_that_fit, shared_prefixes)
from .grounding import Box, box_for, parse_boxes
from .images import preprocess
from .language import Causal, QwenModel, attention_kernels, inverse_frequencies, needs_logn, positions_for
from .loading import (HUB_REPO, ID_FORMER_PREFIX, load_weights, read_generation_defaults, resolve_checkpoint,
                      weight_files)
from .prompt import Prompt, chat_prompt, grounding_query
from .request import EncodedImage, ImageLike, Request, RoleImage, check_window
from .tokenizer import QwenTokenizer
from .vision import VisionTower

log = logging.getLogger(__name__)

VISION_BATCH = 64  # test images per pass through the ViT
CPU_BATCH = 64  # rows per batch on the CPU (no free-memory reading there)


def inference(method):
    """``torch.inference_mode`` and the preferred attention kernels, around every public entry point
    (so that an image encoded by ``precompute`` is bit-identical to one encoded in a request)."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(), attention_kernels():
            return method(*args, **kwargs)
    return wrapper


class IdaVlm(nn.Module):
    """IDA-VLM. Parameter names are the published state-dict keys (``transformer.*``, ``lm_head``)."""

    def __init__(self, config: IdaVlmConfig, tokenizer: QwenTokenizer,
                 defaults: GenerationDefaults = GenerationDefaults(), with_id_former: bool = False):
        super().__init__()
        self.config, self.tokenizer, self.defaults = config, tokenizer, defaults
        self.has_id_former = with_id_former
        self.transformer = QwenModel(config, VisionTower(config.visual, with_id_former))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._check_tokenizer()

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path = HUB_REPO, variant: str = "base",
                        dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> "IdaVlm":
        """Load a checkpoint in the published layout: a model folder, a repo root holding
        ``weights/model-<variant>``, or a hub id (default: the authors' repo, downloaded with
        huggingface_hub). ``variant`` must match the weights ("idf" has the ID-Former). Defaults:
        CUDA if available, bf16 on GPU and fp32 on CPU."""
        folder = resolve_checkpoint(path_or_id, variant)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        files = weight_files(folder)
        with_id_former = any(key.startswith(ID_FORMER_PREFIX) for key in files)
        if with_id_former != (variant == "idf"):
            found = "idf (it has ID-Former weights)" if with_id_former else "base (no ID-Former weights)"
            raise IdaVlmError(f"checkpoint is the {found} variant, not {variant!r}", folder)
        tokenizer = QwenTokenizer.from_file(folder / "qwen.tiktoken")
        config = IdaVlmConfig.from_file(folder / "config.json")
        with torch.device("meta"):
            model = cls(config, tokenizer, read_generation_defaults(folder), with_id_former)
        load_weights(model, files, dtype, device)
        return model.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.wte.weight.dtype

    @property
    def variant(self) -> str:
        return "idf" if self.has_id_former else "base"

    # ---- public API -------------------------------------------------------------------------

    @inference
    def precompute(self, images: Sequence[RoleImage]) -> list[RoleImage]:
        """Encode ID (or general) images once, e.g. a film's cast, for reuse in many requests: the
        same ``RoleImage``s with an ``EncodedImage`` in place of the picture. Results are
        bit-identical to encoding them inside a request (such images always go through the
        vision tower one at a time)."""
        if any(not isinstance(image, RoleImage) or image.role == "test" for image in images):
            raise IdaVlmError("precompute takes RoleImage(image, 'id' or 'general') pairs "
                              "(test images depend on their window's ID images)")
        return [RoleImage(self._encoded(image), image.role) for image in images]

    @inference
    def encode_images(self, images: Sequence[RoleImage]) -> torch.Tensor:
        """Visual tokens ``[n_images, 256, hidden]`` of one request's images; with the ID-Former,
        test images are modulated by the ID images among them."""
        (tokens,) = self._image_tokens([check_window(images)])
        return torch.stack(tokens)

    @inference
    def logits(self, request: Request) -> torch.Tensor:
        """Logits ``[seq_len, vocab]`` over the ChatML-wrapped query, the whole prompt in one pass."""
        prompt = self._prompt(request, max_new_tokens=0)
        (tokens,) = self._image_tokens([request.images])
        length = len(prompt.ids)
        embeds = self._embed(prompt, tokens, 0, length)
        inv_freq = inverse_frequencies(self.config, [alpha_for(self.config, length)], self.device)
        pos = positions_for(self.config, torch.arange(length, device=self.device)[None], inv_freq,
                            needs_logn(self.config, length - 1), self.dtype)
        return self.lm_head(self.transformer(embeds[None], pos, Causal()))[0]

    @inference
    def generate(self, requests: Sequence[Request], max_new_tokens: int | None = None, do_sample: bool = False,
                 top_p: float | None = None, top_k: int | None = None, temperature: float = 1.0,
                 seed: int | None = None, ignore_eos: bool = False, batch_size: int | None = None,
                 share_prefix: bool = True, cuda_graphs: bool = True) -> list[Generation]:
        """Answer many requests, in batches (greedy unless ``do_sample``; sampling defaults come from
        the checkpoint: top_p 0.3, top_k 0). Each answer stops at ``<|im_end|>``, ``<|im_start|>``
        or ``<|endoftext|>`` unless ``ignore_eos``.

        ``batch_size`` None sizes batches to the free GPU memory (on an out-of-memory error a batch
        is halved and retried). Requests that open with the same text and the same precomputed images
        (the same ``EncodedImage`` objects, e.g. a film's cast in cast order) share that prefix:
        prefilled once, read once per decode step (``share_prefix``). ``cuda_graphs`` replays
        each decode step as one CUDA graph. Both are off only to compare: the answers are the same."""
        requests = list(requests)
        if not all(isinstance(request, Request) for request in requests):
            raise IdaVlmError("generate takes Request(query, images) objects")
        if not requests:
            return []
        max_new_tokens = max_new_tokens or self.defaults.max_new_tokens
        prompts = [self._prompt(request, max_new_tokens) for request in requests]
        rows = self._plan(requests, prompts, share_prefix)
        sampling = Sampling(do_sample, self.defaults.top_p if top_p is None else top_p,
                            self.defaults.top_k if top_k is None else top_k, temperature, seed)
        generator = None
        if do_sample and seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)

        results: dict[int, tuple[list[int], str]] = {}
        limit = batch_size
        while rows:
            batch, failed = rows[:limit or self._rows_that_fit(rows, max_new_tokens)], False
            try:
                answers = self._generate_batch(batch, requests, prompts, max_new_tokens, sampling, generator,
                                               ignore_eos, cuda_graphs)
            except torch.OutOfMemoryError:
                if len(batch) == 1:
                    raise IdaVlmError(f"out of GPU memory for a single request of {batch[0].length} prompt "
                                      f"tokens and {max_new_tokens} new tokens") from None
                limit, failed = len(batch) // 2, True
                log.warning("out of GPU memory with %d rows a batch; retrying with %d", len(batch), limit)
            if failed:
                torch.cuda.empty_cache()  # here, once the failed batch's tensors are gone
                continue
            results.update(zip((row.index for row in batch), answers))
            rows = rows[len(batch):]
        tok = self.tokenizer
        return [Generation(tok.decode(ids).strip(), ids, reason) for ids, reason in (results[i] for i in range(len(requests)))]

    def batch_size_for(self, requests: Sequence[Request], max_new_tokens: int) -> int:
        """The rows ``generate`` would put in its first batch, sized to the free memory now."""
        prompts = [self._prompt(request, max_new_tokens) for request in requests]
        return self._rows_that_fit(self._plan(list(requests), prompts, True), max_new_tokens)

    def locate(self, name: str, id_image: ImageLike, image: ImageSource, max_new_tokens: int = 64) -> Box | None:
        """MM-ID location task: find ``name`` (shown by ``id_image``) in ``image``; the box is in
        ``image``'s pixels (upright), None if the answer holds no box."""
        picture = load_rgb(image)
        request = Request(grounding_query(name), (RoleImage(id_image, "id"), RoleImage(picture, "test")))
        (answer,) = self.generate([request], max_new_tokens=max_new_tokens)
        height, width = picture.shape[:2]
        return box_for(parse_boxes(answer.text, width, height), name)

    # ---- internals --------------------------------------------------------------------------

    def _check_tokenizer(self) -> None:
        tok, config = self.tokenizer, self.config
        if tok.img_start_id != config.visual.image_start_id or tok.n_vocab > config.vocab_size:
            raise IdaVlmError(f"qwen.tiktoken does not fit config.json: <img> is {tok.img_start_id} "
                              f"(config: {config.visual.image_start_id}), {tok.n_vocab} ids (vocab_size "
                              f"{config.vocab_size})")

    def _prompt(self, request: Request, max_new_tokens: int) -> Prompt:
        if not isinstance(request, Request):
            raise IdaVlmError("a request must be a Request(query, images)")
        prompt = chat_prompt(self.tokenizer, request.query)
        limit = self.config.max_position_embeddings
        if len(prompt.ids) + max_new_tokens > limit:
            raise IdaVlmError(f"prompt of {len(prompt.ids)} tokens plus {max_new_tokens} new tokens "
                              f"exceeds the model's context of {limit} tokens")
        return prompt

    def _plan(self, requests: list[Request], prompts: list[Prompt], share_prefix: bool) -> list[Row]:
        lengths = [len(prompt.ids) for prompt in prompts]
        alphas = [alpha_for(self.config, n) for n in lengths]
        groups = []
        if share_prefix:
            groups = shared_prefixes([self._shareable(p, r) for p, r in zip(prompts, requests)], lengths, alphas)
        return plan_rows(lengths, alphas, groups)

    def _rows_that_fit(self, rows: list[Row], max_new_tokens: int) -> int:
        if self.device.type != "cuda":
            return min(len(rows), CPU_BATCH)
        free, _ = torch.cuda.mem_get_info(self.device)
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        return rows_that_fit(self.config, rows, max_new_tokens, self.dtype, free)

    def _generate_batch(self, batch: list[Row], requests: list[Request], prompts: list[Prompt], max_new_tokens: int,
                        sampling: Sampling, generator, ignore_eos: bool, cuda_graphs: bool):
        prefixes = {}
        for row in batch:
            if row.group is not None and row.group not in prefixes:  # only precomputed images in a prefix
                images = requests[row.index].images
                tokens = [image.image.tokens if isinstance(image.image, EncodedImage) else None for image in images]
                prefixes[row.group] = self._embed(prompts[row.index], tokens, 0, row.prefix)

        def suffixes(rows: list[Row]) -> list[torch.Tensor]:
            tokens = self._image_tokens([requests[row.index].images for row in rows])
            return [self._embed(prompts[row.index], t, row.prefix, row.length) for row, t in zip(rows, tokens)]

        tok = self.tokenizer
        return generate_tokens(self.transformer, self.lm_head, self.config, batch, prefixes, suffixes,
                               {tok.im_end_id, tok.im_start_id, tok.endoftext_id}, max_new_tokens, sampling,
                               generator, ignore_eos, cuda_graphs)

    def _encoded(self, image: RoleImage) -> EncodedImage:
        """An ID or general image through the tower on its own (or as precomputed, checked)."""
        if not isinstance(image.image, EncodedImage):
            visual = self.transformer.visual
            pooled = visual.attn_pool(visual.patch_features(self._pixels([image.image])))
            id_keys = pooled[0] if image.role == "id" and self.has_id_former else None
            return EncodedImage(visual.output(pooled)[0], image.role, id_keys)
        encoded = image.image
        if image.role == "id" and self.has_id_former and encoded.id_keys is None:
            raise IdaVlmError("this ID image was precomputed by a model without the ID-Former")
        if encoded.tokens.shape != (IMAGE_TOKENS, self.config.hidden_size):
            raise IdaVlmError(f"encoded image has shape {list(encoded.tokens.shape)}, "
                              f"expected {[IMAGE_TOKENS, self.config.hidden_size]}")
        return encoded

    def _image_tokens(self, windows: Sequence[Sequence[RoleImage]]) -> list[list[torch.Tensor]]:
        """Visual tokens of every image of each window (a request's images). ID and general images
        go through the tower one at a time (so precomputed ones are bit-identical); the test images
        of all the windows go through the ViT together, then each window's through the ID-Former
        (its own ID images) and the resampler."""
        encoded = [[self._encoded(image) if image.role != "test" else None for image in window] for window in windows]
        tokens = [[e.tokens if e is not None else None for e in window] for window in encoded]
        tests = [(w, k) for w, window in enumerate(windows) for k, image in enumerate(window) if image.role == "test"]
        if not tests:
            return tokens
        visual = self.transformer.visual
        features = torch.cat([visual.patch_features(self._pixels([windows[w][k].image for w, k in tests[i:i + VISION_BATCH]]))
                              for i in range(0, len(tests), VISION_BATCH)])
        for w in dict.fromkeys(w for w, _ in tests):
            mine = [i for i, (window, _) in enumerate(tests) if window == w]
            window_features = features[mine[0]:mine[-1] + 1]
            id_keys = [e.id_keys for e in encoded[w] if e is not None and e.role == "id"]
            if self.has_id_former and id_keys:
                window_features = visual.attn_pool.modulate(window_features, torch.cat(id_keys))
            for i, t in zip(mine, visual.output(visual.attn_pool(window_features))):
                tokens[w][tests[i][1]] = t
        return tokens

    @staticmethod
    def _shareable(prompt: Prompt, request: Request) -> list:
        """The part of a prompt other requests may share, as comparable items: its token ids, with
        each precomputed image's first pad slot holding the ``EncodedImage`` (the same object, the
        same visual tokens). It ends where the first image given raw starts: a test image (the
        ID-Former modulates it per window) or anything else not precomputed."""
        items: list = list(prompt.ids)
        for start, image in zip(prompt.image_starts, request.images):
            if not isinstance(image.image, EncodedImage):
                return items[:start]
            items[start] = image.image
        return items

    def _pixels(self, images: Sequence[ImageSource]) -> torch.Tensor:
        return preprocess(images, self.config.visual.image_size, self.device)

    def _embed(self, prompt: Prompt, image_tokens: list[torch.Tensor | None], begin: int, end: int) -> torch.Tensor:
        """Embeddings ``[end - begin, hidden]`` of prompt positions ``[begin, end)``, each image's pad
        positions holding its visual tokens (images outside the range may be None)."""
        embeds = self.transformer.wte(torch.tensor(prompt.ids[begin:end], device=self.device))
        for start, tokens in zip(prompt.image_starts, image_tokens):
            first, last = max(start, begin), min(start + IMAGE_TOKENS, end)
            if first < last:
                assert tokens is not None, "an image inside the range has no visual tokens"
                embeds[first - begin:last - begin] = tokens[first - start:last - start].to(embeds.dtype)
        return embeds
