"""A tiny insightface model pack, built with ``onnx.helper``, in buffalo_l's published layout.

Real packs cannot be downloaded here, so the tests load these instead through insightface's
own routing, which picks a model's type from its inputs and outputs alone:

* ``det_10g.onnx``, SCRFD-like: input ``input.1`` [1, 3, ?, ?] and nine outputs in
  insightface's order (scores, then bboxes, then kps, each for strides 8, 16, 32, two
  anchors per cell). Only stride 32 ever fires: its score is high where the 96x96 window
  centred on an anchor point is lit (any channel at 255) and low once the window is
  shifted by a cell. Its boxes and landmarks are constant offsets, so a lit 96x96 square
  centred on a multiple of 32 (in detector-input pixels) yields exactly that square as the
  box and ArcFace's five template points scaled into it as landmarks.
* ``w600k_r50.onnx``, ArcFace-like: input [-1, 3, 112, 112], output [-1, 512]. The
  embedding is the crop's mean colour with its grey part removed, mapped to 512 dimensions
  by a fixed matrix with orthonormal rows, so cosine similarities are those of the chroma
  vectors: two red faces score 1.0, red against blue -0.5, and a dark border changes
  nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DETECTOR = "det_10g.onnx"
RECOGNISER = "w600k_r50.onnx"
FACE_SIDE = 96          # pixels of the square the detector boxes, in detector-input pixels
EMBEDDING_DIM = 512
OPSET = 13
IR_VERSION = 8          # what onnxruntime 1.16 and later all read

# insightface's ArcFace alignment template (utils/face_align.arcface_dst) for a 112 crop.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


def face_landmarks(center_x: float, center_y: float, side: float = FACE_SIDE) -> np.ndarray:
    """The five landmarks the tiny detector gives a square of ``side`` pixels at a centre."""
    return ARCFACE_TEMPLATE / 112.0 * side - side / 2 + np.array([center_x, center_y], np.float32)


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="movieid-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _detector_graph() -> onnx.GraphProto:
    stride = 32
    nodes = [
        # Lit wherever any channel is bright: blobs are (pixel - 127.5) / 128, so 255 -> ~1.
        helper.make_node("ReduceMax", ["input.1"], ["light"], axes=[1], keepdims=1),
        # Mean light of the 96x96 window centred on each stride-32 anchor (c*32, r*32):
        # padding 48 before and 16 after keeps the grid at H/32 x W/32, as SCRFD expects.
        helper.make_node("AveragePool", ["light"], ["window"], kernel_shape=[FACE_SIDE] * 2,
                         strides=[stride] * 2, pads=[48, 48, 16, 16]),
        helper.make_node("Sub", ["window", "lit_level"], ["window_margin"]),
        helper.make_node("Mul", ["window_margin", "steepness"], ["window_logit"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(0.8, np.float32), "lit_level"),
        numpy_helper.from_array(np.array(20.0, np.float32), "steepness"),
        numpy_helper.from_array(np.array([1.0, 0.0], np.float32), "first_anchor_only"),
        numpy_helper.from_array(np.array([-1, 1], np.int64), "column"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    # Distances in stride units from the anchor point: a FACE_SIDE box centred on it, and
    # the ArcFace template scaled into that box.
    half = FACE_SIDE / 2 / stride
    box = np.full((1, 4), half, np.float32)
    kps = (face_landmarks(0.0, 0.0) / stride).reshape(1, 10)
    outputs = {"score": [], "bbox": [], "kps": []}
    for s in (8, 16, 32):
        if s == stride:
            logit = "window_logit"
        else:  # the finer strides never fire: a logit of -20 everywhere on their grid
            nodes += [helper.make_node("AveragePool", ["light"], [f"grid{s}"], kernel_shape=[s, s],
                                       strides=[s, s]),
                      helper.make_node("Mul", [f"grid{s}", "zero"], [f"flat{s}"]),
                      helper.make_node("Sub", [f"flat{s}", "steepness"], [f"logit{s}"])]
            logit = f"logit{s}"
        # [1, 1, h, w] -> [h*w, 1] -> two anchors per cell, row = cell * 2 + anchor.
        nodes += [
            helper.make_node("Sigmoid", [logit], [f"prob{s}"]),
            helper.make_node("Reshape", [f"prob{s}", "column"], [f"cells{s}"]),
            helper.make_node("Concat", [f"cells{s}", f"cells{s}"], [f"pair{s}"], axis=1),
            helper.make_node("Mul", [f"pair{s}", "first_anchor_only"], [f"anchors{s}"]),
            helper.make_node("Reshape", [f"anchors{s}", "column"], [f"score_{s}"]),
            helper.make_node("Mul", [f"score_{s}", "zero"], [f"rows{s}"]),
            helper.make_node("Add", [f"rows{s}", "box_offsets"], [f"bbox_{s}"]),
            helper.make_node("Add", [f"rows{s}", "kps_offsets"], [f"kps_{s}"]),
        ]
        for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
            outputs[kind].append(helper.make_tensor_value_info(
                f"{kind}_{s}", TensorProto.FLOAT, [f"anchors_{s}", width]))
    initializers += [numpy_helper.from_array(box, "box_offsets"),
                     numpy_helper.from_array(kps, "kps_offsets")]
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])
    return helper.make_graph(nodes, "tiny_scrfd", [image],
                             outputs["score"] + outputs["bbox"] + outputs["kps"], initializers)


def _recogniser_graph(seed: int) -> onnx.GraphProto:
    rng = np.random.default_rng(seed)
    rows, _ = np.linalg.qr(rng.standard_normal((EMBEDDING_DIM, 3)))   # orthonormal columns
    grey_free = np.eye(3) - 1.0 / 3.0                                   # removes the grey part
    projection = (grey_free @ rows.T).astype(np.float32)               # [3, EMBEDDING_DIM]
    nodes = [
        helper.make_node("GlobalAveragePool", ["input.1"], ["colour"]),
        helper.make_node("Flatten", ["colour"], ["colour_row"], axis=1),
        helper.make_node("MatMul", ["colour_row", "projection"], ["683"]),
    ]
    crop = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])
    embedding = helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", EMBEDDING_DIM])
    return helper.make_graph(nodes, "tiny_arcface", [crop], [embedding],
                             [numpy_helper.from_array(projection, "projection")])


def build_tiny_pack(folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny detector and recogniser into ``folder``; ``seed`` varies the recogniser."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _save(_detector_graph(), folder / DETECTOR)
    _save(_recogniser_graph(seed), folder / RECOGNISER)
    return folder
