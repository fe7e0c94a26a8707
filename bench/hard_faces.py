"""Hard appearances made from real photos: rotated, turned and covered faces, framed 16:9.

``make(photo, kind, out)`` writes one variant of a photo's largest face, framed so the face
fills about a third of the frame's height (the films of bench/identity.py and the tests use
them as shots). The kinds, in two groups:

* turned: ``rotated 25`` / ``rotated 45`` (the head tilted, rotated about the face centre),
  ``turned 60`` / ``turned 45`` (the photo squeezed to 60 % / 45 % of its width: the
  foreshortening of a head turned about 50 / 65 degrees; the filmmaker can mirror them);
* covered: ``mouth covered`` (a hand over the lower half), ``eyes covered`` (a band over the
  eyes), ``half covered`` (the left half behind an object), ``cut by the edge`` (45 % of the
  face beyond the frame's left edge);
* dark: ``dusk`` / ``night`` (the framed photo's contrast, then its light, scaled to 0.5 / 0.3 by
  PIL's ImageEnhance: a night grade, faces of about 13 / 5 grey levels of contrast).

The face is found by dlib's HOG detector on the unmodified photo (upsampled once); that is
where the occluders go. Variants are deterministic (same photo, same file).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

TURNED = ("rotated 25", "rotated 45", "turned 60", "turned 45")
COVERED = ("mouth covered", "eyes covered", "half covered", "cut by the edge")
DARK = ("dusk", "night")
KINDS = TURNED + COVERED + DARK
GRADES = {"dusk": 0.5, "night": 0.3}  # contrast and light, each scaled by this
FACE_SHARE = 0.33          # face height / frame height
HAND = (196, 150, 122)     # the occluders' colour: a hand, a scarf
BAND = (24, 24, 28)        # sunglasses


def face_box(image: Image.Image) -> tuple[float, float, float, float]:
    """The largest face's (x1, y1, x2, y2) in the photo."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    rects = detector(np.asarray(image.convert("L")), 1)
    if not rects:
        raise ValueError("no face found")
    r = max(rects, key=lambda r: r.area())
    return float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)


def _framed(image: Image.Image, box, left_edge_at: float | None = None) -> Image.Image:
    """A 16:9 crop inside the photo with the face at FACE_SHARE of its height or more, centred
    (or with the crop's left edge at ``left_edge_at`` of the face's width from its left)."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = None if left_edge_at is None else x1 + left_edge_at * (x2 - x1)
    w = min((y2 - y1) / FACE_SHARE, image.height) * 16 / 9
    w = min(w, image.width - (0 if left is None else left))
    h = w * 9 / 16
    left = min(max(0.0, cx - w / 2), image.width - w) if left is None else left
    top = min(max(0.0, cy - h / 2), image.height - h)
    return image.crop(tuple(round(v) for v in (left, top, left + w, top + h)))


def make(photo: Path, kind: str, out: Path) -> Path:
    """Write ``kind`` of ``photo`` to ``out`` (a .png) and return it."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    image = Image.open(photo).convert("RGB")
    x1, y1, x2, y2 = box = face_box(image)
    fw, fh = x2 - x1, y2 - y1
    if kind.startswith("rotated"):
        angle = float(kind.split()[1])
        image = image.rotate(angle, resample=Image.BICUBIC, center=((x1 + x2) / 2, (y1 + y2) / 2))
    elif kind.startswith("turned"):
        factor = float(kind.split()[1]) / 100
        image = image.resize((round(image.width * factor), image.height), Image.LANCZOS)
        box = (x1 * factor, y1, x2 * factor, y2)
    elif kind == "mouth covered":
        ImageDraw.Draw(image).rounded_rectangle((x1 - 0.15 * fw, y1 + 0.55 * fh, x2 + 0.15 * fw, y2 + 0.25 * fh),
                                                radius=0.2 * fw, fill=HAND)
    elif kind == "eyes covered":
        ImageDraw.Draw(image).rectangle((x1 - 0.05 * fw, y1 + 0.12 * fh, x2 + 0.05 * fw, y1 + 0.45 * fh), fill=BAND)
    elif kind == "half covered":
        ImageDraw.Draw(image).rectangle((x1 - 0.3 * fw, y1 - 0.3 * fh, x1 + 0.5 * fw, y2 + 0.3 * fh), fill=HAND)
    framed = _framed(image, box, left_edge_at=0.45 if kind == "cut by the edge" else None)
    if kind in GRADES:
        framed = ImageEnhance.Brightness(ImageEnhance.Contrast(framed).enhance(GRADES[kind])).enhance(GRADES[kind])
    out.parent.mkdir(parents=True, exist_ok=True)
    framed.save(out)
    return out
