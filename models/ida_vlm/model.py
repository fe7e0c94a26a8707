"""``IdaVlm``: the whole model (vision tower, ID-Former, Qwen-7B) and its public API."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import torch
from torch import nn

from movieid.errors import MovieIdError

from .config import IMAGE_TOKENS, IdaVlmConfig
from .generation import Generation, GenerationDefaults, Sampling, alpha_for, generate_tokens
from .grounding import Box, box_for, parse_boxes
from .images import ImageInput, image_size, preprocess
from .language import QwenModel, positions_for
from .loading import (HUB_REPO, ID_FORMER_PREFIX, load_weights, read_generation_defaults, resolve_checkpoint,
                      weight_files)
from .prompt import Prompt, chat_prompt, grounding_query
from .tokenizer import QwenTokenizer
from .vision import VisionTower

ROLES = ("id", "test", "general")
MAX_IMAGES = 8  # ID and test images together, as the authors trained (8 images ~ 2064 tokens)


@dataclass(frozen=True, eq=False)
class EncodedImage:
    """An ID or general image already through the vision tower (``IdaVlm.precompute``); pass it
    wherever an image is accepted to reuse it, e.g. a film's cast for every window.

    ``tokens`` are the 256 visual tokens; ``id_keys`` (ID-Former checkpoints, role "id") is the
    resampler output before ``ln_post``/``proj``, which test images attend to."""

    tokens: torch.Tensor
    role: str
    id_keys: torch.Tensor | None = None


ImageLike = Union[ImageInput, EncodedImage]
Request = tuple[str, Sequence[ImageLike], Sequence[str]]


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
            raise MovieIdError(f"checkpoint is the {found} variant, not {variant!r}", folder)
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

    @torch.inference_mode()
    def precompute(self, images: Sequence[ImageInput], roles: Sequence[str]) -> list[EncodedImage]:
        """Encode ID (or general) images once, e.g. a film's cast, for reuse in many requests.
        Results are bit-identical to encoding them inside a request: such images always go
        through the vision tower one at a time."""
        if len(images) != len(roles) or any(role not in ("id", "general") for role in roles):
            raise MovieIdError("precompute takes one role per image, each 'id' or 'general' "
                               "(test images depend on their window's ID images)")
        return [self._encode_one(image, role) for image, role in zip(images, roles)]

    @torch.inference_mode()
    def encode_images(self, images: Sequence[ImageLike], roles: Sequence[str]) -> torch.Tensor:
        """Visual tokens ``[n_images, 256, hidden]``; with the ID-Former, test images are modulated
        by the ID images of the same call."""
        self._check_window(images, roles)
        return torch.stack(self._encode_window(images, roles))

    @torch.inference_mode()
    def logits(self, query: str, images: Sequence[ImageLike], roles: Sequence[str]) -> torch.Tensor:
        """Logits ``[seq_len, vocab]`` over the ChatML-wrapped query (one ``<img>...</img>`` per image)."""
        prompt = self._prompt(query, images, roles, max_new_tokens=0)
        embeds = self._embed(prompt, self._encode_window(images, roles))
        length = len(prompt.ids)
        pos = positions_for(self.config, torch.arange(length, device=self.device)[None],
                            [alpha_for(self.config, length)], self.dtype)
        return self.lm_head(self.transformer(embeds[None], pos))[0]

    @torch.inference_mode()
    def generate(self, requests: Sequence[Request], max_new_tokens: int | None = None, do_sample: bool = False,
                 top_p: float | None = None, top_k: int | None = None, temperature: float = 1.0,
                 seed: int | None = None, ignore_eos: bool = False, share_prefix: bool = True) -> list[Generation]:
        """Answer many ``(query, images, roles)`` requests in one batch (greedy unless ``do_sample``;
        sampling defaults come from the checkpoint: top_p 0.3, top_k 0). Each answer stops at
        ``<|im_end|>``, ``<|im_start|>`` or ``<|endoftext|>`` unless ``ignore_eos``.

        Requests that open with the same text and the same precomputed images (the same
        ``EncodedImage`` objects, e.g. a film's cast in cast order) have that prefix prefilled once
        for all of them (``share_prefix``; off only to compare: the answers are the same)."""
        if not requests:
            return []
        max_new_tokens = max_new_tokens or self.defaults.max_new_tokens
        prompts = [self._prompt(query, images, roles, max_new_tokens) for query, images, roles in requests]
        embeds = [self._embed(prompt, self._encode_window(images, roles))
                  for prompt, (_, images, roles) in zip(prompts, requests)]
        sampling = Sampling(do_sample, self.defaults.top_p if top_p is None else top_p,
                            self.defaults.top_k if top_k is None else top_k, temperature, seed)
        tok = self.tokenizer
        stop_ids = {tok.im_end_id, tok.im_start_id, tok.endoftext_id}
        shareable = None
        if share_prefix:
            shareable = [self._shareable(prompt, images) for prompt, (_, images, _) in zip(prompts, requests)]
        results = generate_tokens(self.transformer, self.lm_head, self.config, embeds, stop_ids,
                                  max_new_tokens, sampling, ignore_eos, shareable)
        return [Generation(tok.decode(ids).strip(), ids, reason) for ids, reason in results]

    def locate(self, name: str, id_image: ImageLike, image: ImageInput, max_new_tokens: int = 64) -> Box | None:
        """MM-ID location task: find ``name`` (shown by ``id_image``) in ``image``; the box is in
        ``image``'s pixels, None if the answer holds no box."""
        (answer,) = self.generate([(grounding_query(name), [id_image, image], ["id", "test"])],
                                  max_new_tokens=max_new_tokens)
        width, height = image_size(image)
        return box_for(parse_boxes(answer.text, width, height), name)

    # ---- internals --------------------------------------------------------------------------

    def _check_tokenizer(self) -> None:
        tok, config = self.tokenizer, self.config
        if tok.img_start_id != config.visual.image_start_id or tok.n_vocab > config.vocab_size:
            raise MovieIdError(f"qwen.tiktoken does not fit config.json: <img> is {tok.img_start_id} "
                               f"(config: {config.visual.image_start_id}), {tok.n_vocab} ids (vocab_size "
                               f"{config.vocab_size})")

    def _check_window(self, images: Sequence[ImageLike], roles: Sequence[str]) -> None:
        if len(images) != len(roles):
            raise MovieIdError(f"{len(images)} images but {len(roles)} roles")
        if len(images) > MAX_IMAGES:
            raise MovieIdError(f"a request holds at most {MAX_IMAGES} images (ID and test images together), "
                               f"got {len(images)}")
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise MovieIdError(f"unknown image roles {unknown} (use 'id', 'test' or 'general')")
        if "general" in roles and set(roles) != {"general"}:
            raise MovieIdError("general images cannot share a request with ID or test images")
        if "test" in roles and "id" in roles[list(roles).index("test"):]:
            raise MovieIdError("ID images must precede test images")

    def _prompt(self, query: str, images: Sequence[ImageLike], roles: Sequence[str], max_new_tokens: int) -> Prompt:
        self._check_window(images, roles)
        prompt = chat_prompt(self.tokenizer, query)
        if len(prompt.image_starts) != len(images):
            raise MovieIdError(f"the query has {len(prompt.image_starts)} <img></img> tags "
                               f"but {len(images)} images were given")
        limit = self.config.max_position_embeddings
        if len(prompt.ids) + max_new_tokens > limit:
            raise MovieIdError(f"prompt of {len(prompt.ids)} tokens plus {max_new_tokens} new tokens "
                               f"exceeds the model's context of {limit} tokens")
        return prompt

    def _encode_one(self, image: ImageInput, role: str) -> EncodedImage:
        visual = self.transformer.visual
        pooled = visual.attn_pool(visual.patch_features(self._pixels([image])))
        id_keys = pooled[0] if role == "id" and self.has_id_former else None
        return EncodedImage(visual.output(pooled)[0], role, id_keys)

    def _encode_window(self, images: Sequence[ImageLike], roles: Sequence[str]) -> list[torch.Tensor]:
        """Visual tokens of each image of one request. ID and general images go through the
        tower one at a time (so cached ones are bit-identical); the test images go together."""
        encoded: dict[int, EncodedImage] = {}
        for k, (image, role) in enumerate(zip(images, roles)):
            if isinstance(image, EncodedImage):
                encoded[k] = self._check_encoded(image, role)
            elif role != "test":
                encoded[k] = self._encode_one(image, role)
        tokens = {k: e.tokens for k, e in encoded.items()}
        tests = [k for k, role in enumerate(roles) if role == "test"]
        if tests:
            visual = self.transformer.visual
            features = visual.patch_features(self._pixels([images[k] for k in tests]))
            id_keys = [encoded[k].id_keys for k, role in enumerate(roles) if role == "id"]
            if self.has_id_former and id_keys:
                features = visual.attn_pool.modulate(features, torch.cat(id_keys))
            tokens.update(zip(tests, visual.output(visual.attn_pool(features))))
        return [tokens[k] for k in range(len(images))]

    def _check_encoded(self, image: EncodedImage, role: str) -> EncodedImage:
        if role == "test":
            raise MovieIdError("test images must be passed raw: with the ID-Former they depend on "
                               "the request's ID images")
        if image.role != role:
            raise MovieIdError(f"an image precomputed as {image.role!r} is given as {role!r}")
        if role == "id" and self.has_id_former and image.id_keys is None:
            raise MovieIdError("this ID image was precomputed by a model without the ID-Former")
        if image.tokens.shape != (IMAGE_TOKENS, self.config.hidden_size):
            raise MovieIdError(f"encoded image has shape {list(image.tokens.shape)}, "
                               f"expected {[IMAGE_TOKENS, self.config.hidden_size]}")
        return image

    @staticmethod
    def _shareable(prompt: Prompt, images: Sequence[ImageLike]) -> list:
        """The part of a prompt other requests may share, as comparable items: its token ids, with
        each precomputed image's first pad slot holding the ``EncodedImage`` (the same object, the
        same visual tokens). It ends where the first image given raw starts: a test image (the
        ID-Former modulates it per window) or anything else not precomputed."""
        items: list = list(prompt.ids)
        for start, image in zip(prompt.image_starts, images):
            if not isinstance(image, EncodedImage):
                return items[:start]
            items[start] = image
        return items

    def _pixels(self, images: Sequence[ImageInput]) -> torch.Tensor:
        return preprocess(images, self.config.visual.image_size, self.device)

    def _embed(self, prompt: Prompt, image_tokens: list[torch.Tensor]) -> torch.Tensor:
        """Token embeddings ``[L, hidden]`` with each image's pad tokens replaced by its visual tokens."""
        embeds = self.transformer.wte(torch.tensor(prompt.ids, device=self.device))
        if image_tokens:
            starts = torch.tensor(prompt.image_starts, device=self.device)
            slots = (starts[:, None] + torch.arange(IMAGE_TOKENS, device=self.device)).flatten()
            embeds[slots] = torch.cat(image_tokens).to(embeds.dtype)
        return embeds
