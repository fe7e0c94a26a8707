"""The pointwise steps that ``fused`` compiles on CUDA, compiled here by inductor's CPU backend: they
compile with only their first dimension dynamic (one graph for every row count, one per width) and
give eager's results. The model's use of them on CUDA is checked against eager in
test_ida_vlm_gpu.py."""
from __future__ import annotations

import torch
from torch._dynamo.utils import counters

from movieid.models.ida_vlm import fused


def _steps(rows: int, dtype: torch.dtype, width: int = 64):
    """Each step with arguments of the model's layout (hidden ``width``, 4 heads of ``width / 4``)."""
    g = torch.Generator().manual_seed(rows)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(dtype)  # noqa: E731
    x, delta, weight, bias = rand(rows, width), rand(rows, width), rand(width), rand(width)
    qk = rand(rows, 3, 4, width // 4)[:, :2]  # a view of a layer's fused q, k, v product
    angles = torch.rand(rows, 1, 1, width // 4, generator=g) * 6
    return [(fused.rms_norm, (x, weight, 1e-6)), (fused.add_rms_norm, (x, delta, weight, 1e-6)),
            (fused.add_layer_norm, (x, delta, weight, bias, 1e-6)), (fused.swiglu, (x, delta)),
            (fused.rotary, (qk, angles.cos(), angles.sin())),
            (fused.rotary_logn, (qk, angles.cos(), angles.sin(), rand(rows, 1, 1)))]


def test_compiled_steps_equal_eager_for_any_number_of_rows(monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "compile_threads", 1)  # no compile workers outliving the test
    counters.clear()
    graphs = []
    with torch.inference_mode():
        for rows, width in ((7, 64), (13, 64), (5, 128), (9, 256)):
            for fn, args in _steps(rows, torch.bfloat16, width):
                got, want = fused._run_compiled(fn, args), fn(*args)
                got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
                for a, b in zip(got, want):
                    assert a.shape == b.shape and a.dtype == b.dtype
                    # eager's roundings kept: at most a bf16 step or two apart (2 ** -7 relative each)
                    torch.testing.assert_close(a, b, rtol=2 ** -6, atol=1e-5)
            graphs.append(counters["stats"]["unique_graphs"])
    steps = len(_steps(1, torch.bfloat16))
    # 13 rows reuse the graphs compiled for 7; each new width has graphs of its own (widths stay
    # static: a second width does not make dynamo turn them into symbols for the third)
    assert graphs == [steps, steps, 2 * steps, 3 * steps]
