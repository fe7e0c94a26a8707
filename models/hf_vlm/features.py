"""Image features from the model's own vision tower, so a cast's ID images are encoded once.

transformers 5 models take pre-encoded images through ``generate(mm_encoder_outputs={"image":
...})``, the path ``generate`` itself uses after encoding ``pixel_values``. This module encodes
images with ``get_image_features``, keeps the ID images' features by content, and assembles
each batch's features in prompt order. A model can reuse features where its forward accepts
``mm_encoder_outputs`` and its image output is ``pooler_output`` alone, either one tensor per
image (Qwen2-VL, Qwen2.5-VL) or one tensor whose first axis runs over images or tiles (SmolVLM,
Idefics3, Gemma 3, LLaVA); models whose output carries more (Qwen3-VL's deepstack features)
encode every image of every window.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
from collections import OrderedDict

import numpy as np

log = logging.getLogger(__name__)

# Fields every image output may hold that no forward reads back from ``mm_encoder_outputs``.
_PLAIN_FIELDS = {"pooler_output", "last_hidden_state", "hidden_states", "attentions"}
CACHE_SIZE = 512   # ID images kept (a few MB each at full size)


def supports_reuse(model) -> bool:
    """Whether ``generate`` accepts pre-encoded images for this model."""
    encoder = getattr(model.base_model, "get_image_features", None)
    return encoder is not None and "mm_encoder_outputs" in inspect.signature(model.forward).parameters


def image_key(pixels: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(pixels).data, digest_size=16,
                           person=str(pixels.shape).encode()[:16]).hexdigest()


class ImageFeatures:
    """Encodes images to per-image features; remembers the ID images'."""

    def __init__(self, model, image_processor):
        self.model, self.image_processor = model, image_processor
        self.encoder = model.base_model.get_image_features
        self.encoder_inputs = set(inspect.signature(self.encoder).parameters) - {"kwargs"}
        self.per_image_tuple: bool | None = None   # the model's own layout, learned on first use
        self.batchable = True                      # False once a batch of images came out in tiles
        self._ids: OrderedDict[str, object] = OrderedDict()

    def _run(self, inputs: dict, count: int) -> list | None:
        """Per-image features of ``count`` images from the image processor's outputs (None where the
        output cannot be cut per image, e.g. images split into tiles)."""
        import torch

        inputs = {k: v.to(self.model.device, dtype=self.model.dtype) if torch.is_floating_point(v)
                  else v.to(self.model.device) for k, v in inputs.items() if k in self.encoder_inputs}
        with torch.inference_mode():
            output = self.encoder(**inputs, return_dict=True)
        extra = {k for k, v in output.items() if v is not None} - _PLAIN_FIELDS
        if extra:
            raise NotImplementedError(f"image output carries {sorted(extra)}")
        pooled = output.pooler_output
        if isinstance(pooled, (tuple, list)):
            self.per_image_tuple = True
            return list(pooled) if len(pooled) == count else None
        self.per_image_tuple = False
        if count == 1:
            return [pooled]
        return [pooled[i:i + 1] for i in range(count)] if pooled.shape[0] == count else None

    def encode(self, images: list) -> list:
        """Per-image features, in order. Images split into tiles are encoded one at a time."""
        if not images:
            return []
        if self.batchable:
            features = self._run(self.image_processor(images=[[i] for i in images], return_tensors="pt"), len(images))
            if features is not None:
                return features
            self.batchable = False   # this processor tiles images: one at a time from now on
        return [self._run(self.image_processor(images=[[i]], return_tensors="pt"), 1)[0] for i in images]

    def encode_selected(self, inputs, indices: list[int], total: int, images: list) -> list:
        """Features of the images at ``indices`` (of ``total``, in prompt order), cut from the processor's
        batch outputs so they are not preprocessed twice; ``images`` are those images, for layouts
        that cannot be cut (they are then preprocessed again)."""
        selected = _select(inputs, indices, total, self.encoder_inputs)
        features = self._run(selected, len(indices)) if selected is not None and indices else None
        return features if features is not None else self.encode(images)
    def ids(self, keyed: list[tuple[str, object]]) -> list:
        """Features of ID images (key, image), encoding only those not seen before."""
        missing = list({key: image for key, image in keyed if key not in self._ids}.items())
        for (key, _), feature in zip(missing, self.encode([image for _, image in missing])):
            self._ids[key] = feature
        while len(self._ids) > CACHE_SIZE:
            self._ids.popitem(last=False)
        for key, _ in keyed:
            self._ids.move_to_end(key)
        return [self._ids[key] for key, _ in keyed]

    def assemble(self, features: list):
        """The ``mm_encoder_outputs`` argument for images in prompt order."""
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        pooled = tuple(features) if self.per_image_tuple else torch.cat(features, dim=0)
        return {"image": BaseModelOutputWithPooling(pooler_output=pooled)}


def _select(inputs, indices: list[int], total: int, names: set[str]) -> dict | None:
    """The image-encoder inputs of some of a batch's images, for the two layouts that can be cut per
    image: patches of all images in one sequence with a grid per image (Qwen2-VL family), or one
    tensor per image along the first axis (Gemma 3, LLaVA). None for other layouts."""
    import torch

    encoder = {k: v for k, v in inputs.items() if k in names and isinstance(v, torch.Tensor)}
    pixels = encoder.get("pixel_values")
    if pixels is None:
        return None
    index = torch.tensor(indices, dtype=torch.long)
    if "image_grid_thw" in encoder:
        grid = encoder["image_grid_thw"]
        if len(grid) != total or set(encoder) != {"pixel_values", "image_grid_thw"}:
            return None
        ends = grid.prod(-1).cumsum(0).tolist()
        starts = [0, *ends[:-1]]
        rows = torch.cat([torch.arange(starts[i], ends[i]) for i in indices])
        return {"pixel_values": pixels[rows], "image_grid_thw": grid[index]}
    if pixels.ndim == 4 and all(v.shape[0] == total for v in encoder.values()):
        return {k: v[index] for k, v in encoder.items()}
    return None
