"""The pointwise steps between the model's matrix products, one kernel each on CUDA.

Eager torch runs the rotary embedding (float32, as Qwen computes it) as five kernels over float32
copies of the queries and keys, RMSNorm as two, a residual add and the norm after it as two, every
one a full pass over memory. Each step here is a plain function of tensors (the reference, and the
path on the CPU); on CUDA ``torch.compile`` (inductor, Triton) fuses each into one kernel, with
eager's roundings to the tensors' dtype kept where eager rounds (``emulate_precision_casts``), so
the results are eager's up to a step of the tensors' dtype here and there (the order of float32
sums, and how closely a torch release's inductor follows eager's roundings). Callers flatten the
leading dimensions; the first is compiled as dynamic and the others static, so one kernel per
width serves every batch and prompt length (a size of 1 gets its own). Compilation runs in this
process (no compile workers left behind), only under inference mode, and is checked once per
device against eager; if that fails, or a later compile does, the eager functions are used.
"""
from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

from ..errors import first_line

log = logging.getLogger(__name__)

OPTIONS = {"emulate_precision_casts": True}


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalised in float32 and rounded to ``x``'s dtype, then scaled (Qwen's order)."""
    return F.rms_norm(x, x.shape[-1:], eps=eps) * weight


def add_rms_norm(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float):
    """The residual sum ``x + delta`` and its RMSNorm."""
    x = x + delta
    return x, rms_norm(x, weight, eps)


def add_layer_norm(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
    """The residual sum ``x + delta`` and its LayerNorm (the ViT's blocks)."""
    x = x + delta
    return x, F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def rotary(qk: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotary embedding of queries and keys ``[N, 2, heads, head_dim]`` (rotate-half convention, in
    float32: a half-precision input is promoted inside each product, not copied first; ``cos``/``sin``
    ``[N, 1, 1, head_dim]``), rounded to the input's dtype: queries and keys ``[N, heads, head_dim]``."""
    first, second = qk.chunk(2, dim=-1)
    return torch.addcmul(qk * cos, torch.cat((-second, first), dim=-1), sin).type_as(qk).unbind(1)


def rotary_logn(qk: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, logn: torch.Tensor):
    """``rotary``, then the queries times their log-n scale ``logn`` ``[N, 1, 1]`` (positions past
    the training length)."""
    q, k = rotary(qk, cos, sin)
    return q * logn, k


def swiglu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Qwen's MLP gate: ``a * silu(b)``."""
    return a * F.silu(b)


def flat(x: torch.Tensor) -> torch.Tensor:
    """``[..., C]`` -> ``[N, C]``: a step sees one shape whatever the batch and length."""
    return x.reshape(-1, x.shape[-1])


def add_norm(step, x: torch.Tensor, delta: torch.Tensor, *params) -> tuple[torch.Tensor, torch.Tensor]:
    """``step`` (``add_rms_norm`` or ``add_layer_norm``) over the rows of ``x`` and ``delta``: the
    residual sum and its norm, in ``x``'s shape."""
    total, normed = call(step, flat(x), flat(delta), *params)
    return total.view(x.shape), normed.view(x.shape)


def call(fn, *args):
    """``fn(*args)``, compiled under inference mode on a device where that works; eager elsewhere
    (the CPU, training) and, after a compile or launch failure, on that device from then on."""
    x = args[0]
    if not (x.is_cuda and torch.is_inference_mode_enabled() and available(x.device)):
        return fn(*args)
    try:
        return _run_compiled(fn, args)
    except torch.OutOfMemoryError:
        raise  # the caller halves its batch
    except Exception as error:  # noqa: BLE001 - any compiler failure: the same step, eager
        _failed.add(_indexed(x.device))
        log.warning("fused %s failed on %s (%s: %s); using eager torch there", fn.__name__, x.device,
                    type(error).__name__, first_line(error))
        return fn(*args)


def available(device: torch.device) -> bool:
    """Whether the compiled functions run on ``device`` and agree with eager (CUDA only)."""
    if device.type != "cuda":
        return False
    device = _indexed(device)
    return device not in _failed and _checked(device)


_failed: set[torch.device] = set()  # devices where a compiled step failed after the check


def _indexed(device: torch.device) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)


@functools.cache
def _checked(device: torch.device) -> bool:
    try:
        import torch._inductor.config as inductor

        inductor.compile_threads = 1  # compile here: no worker processes to outlive a run
        g = torch.Generator(device=device).manual_seed(0)
        rand = lambda *shape: torch.randn(*shape, generator=g, device=device).to(torch.bfloat16)  # noqa: E731
        x, delta, weight, bias = rand(5, 64), rand(5, 64), rand(64), rand(64)
        qk = rand(5, 3, 2, 16)[:, :2]  # a view of a layer's fused q, k, v product, as the model passes it
        angles = torch.rand(5, 1, 1, 16, generator=g, device=device) * 6
        checks = [(add_rms_norm, (x, delta, weight, 1e-6)), (rotary, (qk, angles.cos(), angles.sin())),
                  (rotary_logn, (qk, angles.cos(), angles.sin(), rand(5, 1, 1))), (swiglu, (x, delta)),
                  (rms_norm, (x, weight, 1e-6)), (add_layer_norm, (x, delta, weight, bias, 1e-6))]
        for fn, args in checks:
            with torch.inference_mode():  # as the model runs (grad mode is part of dynamo's guards)
                got, want = _run_compiled(fn, args), fn(*args)
            for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
                torch.testing.assert_close(a, b, rtol=1.6e-2, atol=1e-2)
        return True
    except Exception as error:  # any compile or launch failure: eager is used
        log.warning("fused pointwise kernels unavailable on %s (%s: %s); using eager torch",
                    device, type(error).__name__, first_line(error))
        return False


@functools.cache
def _compiled(fn):
    return torch.compile(fn, options=OPTIONS)


def _run_compiled(fn, args):
    """The compiled ``fn``: the first dimension of a tensor of rows dynamic, every other size static
    (so that the check's small sizes do not make dynamo's automatic dynamic shapes turn the model's
    widths into symbols, and kernels are specialised to them)."""
    for arg in args:
        if isinstance(arg, torch.Tensor):
            for dim in range(arg.dim()):
                if dim == 0 and arg.dim() > 1:
                    torch._dynamo.maybe_mark_dynamic(arg, 0)
                else:
                    torch._dynamo.mark_static(arg, dim)
    return _compiled(fn)(*args)
