"""A request to the model: a query and its images, each image with its role."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..images import ImageSource
from .errors import IdaVlmError
from .prompt import count_images

ROLES = ("id", "test", "general")
MAX_IMAGES = 8  # ID and test images together, as the authors trained (8 images ~ 2064 tokens)


@dataclass(frozen=True, eq=False)
class EncodedImage:
    """An ID or general image already through the vision tower (``IdaVlm.precompute``), reusable in
    any number of requests, e.g. a film's cast for every window.

    ``tokens`` are its 256 visual tokens; ``id_keys`` (ID-Former checkpoints, role "id") is the
    resampler output before ``ln_post``/``proj``, which the request's test images attend to."""

    tokens: torch.Tensor
    role: str
    id_keys: torch.Tensor | None = None


ImageLike = Union[ImageSource, EncodedImage]


@dataclass(frozen=True, eq=False)
class RoleImage:
    """An image and its role in a request: ``"id"`` (a character's reference, ``Name is <img></img>``),
    ``"test"`` (a picture the question is about; with the ID-Former it attends to the request's ID
    images) or ``"general"`` (a request without ID references)."""

    image: ImageLike
    role: str

    def __post_init__(self):
        if self.role not in ROLES:
            raise IdaVlmError(f"unknown image role {self.role!r} (use 'id', 'test' or 'general')")
        if isinstance(self.image, EncodedImage):
            if self.role == "test":
                raise IdaVlmError("test images must be passed raw: with the ID-Former they depend on "
                                  "the request's ID images")
            if self.image.role != self.role:
                raise IdaVlmError(f"an image precomputed as {self.image.role!r} is given as {self.role!r}")
        elif not isinstance(self.image, (str, os.PathLike, Image.Image, np.ndarray)):
            raise IdaVlmError(f"unsupported image type {type(self.image).__name__} "
                              "(use a path, a PIL image, a numpy array or an EncodedImage)")


def check_window(images: Sequence[RoleImage]) -> tuple[RoleImage, ...]:
    """The images of one request, checked: at most ``MAX_IMAGES``, ID images before test images,
    general images only among themselves."""
    images = tuple(images)
    if not all(isinstance(image, RoleImage) for image in images):
        raise IdaVlmError("a request's images must be RoleImage(image, role) pairs")
    if len(images) > MAX_IMAGES:
        raise IdaVlmError(f"a request holds at most {MAX_IMAGES} images (ID and test images together), "
                          f"got {len(images)}")
    check_roles([image.role for image in images])
    return images


def check_roles(roles: Sequence[str]) -> None:
    """The order rules of one request's (or training sample's) images: known roles, general
    images only among themselves, ID images before test images."""
    roles = list(roles)
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise IdaVlmError(f"unknown image roles {unknown} (use 'id', 'test' or 'general')")
    if "general" in roles and set(roles) != {"general"}:
        raise IdaVlmError("general images cannot share a request with ID or test images")
    if "test" in roles and "id" in roles[roles.index("test"):]:
        raise IdaVlmError("ID images must precede test images")


@dataclass(frozen=True)
class Request:
    """A query holding one ``<img></img>`` per image, in order (text between the tags is ignored),
    and its images."""

    query: str
    images: tuple[RoleImage, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "images", check_window(self.images))
        tags = count_images(self.query)
        if tags != len(self.images):
            raise IdaVlmError(f"the query has {tags} <img></img> tags but {len(self.images)} images were given")

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(image.role for image in self.images)
